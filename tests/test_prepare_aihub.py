"""prepare_aihub.py: the AI Hub flattener, on the real archive (when present) and on archives and folders built here.

The synthetic sentences are written for these tests; nothing of the real data is copied into the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SHARED_DATA

from kosenttype.atomic_output import write_text_atomically
from kosenttype.prepare_aihub import main, prepare

REAL_ARCHIVE = SHARED_DATA / "aihub" / "TL_뉴스_금융.zip"
RECORD_KEYS = ["sentence", "label", "polarity", "tense", "certainty", "doc_id", "media_type", "category", "source"]


# ----------------------------------------------------------------------------------------------------------------
# Builders for synthetic AI Hub data


def annotation(text, label, polarity="긍정", tense="과거", certainty="확실") -> dict:
    value = {"극성": polarity, "시제": tense, "확실성": certainty, "핵심동사": "했다", "key_word": " ", "word_num": 3}
    return {"charNum": "1", "label": label, "length": len(text or ""), "text": text, "value": value}


def document(*annotations, doc_id="900001", media="뉴스", category="경제") -> dict:
    metadata = {"ID": doc_id, "FILENAME": f"{doc_id}.json", "MEDIA_TYPE": media, "MEDIA_NAME": "테스트일보"}
    return {"annotation": list(annotations), "dupLabelYn": "Y", "metaData": {**metadata, "CATEGORY": category}}


def as_bytes(data, bom: bool = False) -> bytes:
    return (b"\xef\xbb\xbf" if bom else b"") + json.dumps(data, ensure_ascii=False).encode("utf-8")


class UnflaggedNameZipInfo(zipfile.ZipInfo):
    """A member whose name is stored as given bytes WITHOUT the UTF-8 flag, as Windows archivers write cp949 names."""

    def __init__(self, raw_name: bytes):
        super().__init__(raw_name.decode("cp437"))
        self.raw_name = raw_name
        self.compress_type = zipfile.ZIP_DEFLATED

    def _encodeFilenameFlags(self):
        return self.raw_name, self.flag_bits & ~0x800


def write_zip(path: Path, members: dict, unflagged: dict | None = None) -> Path:
    """`members`: name → bytes, stored the standard way; `unflagged`: raw name bytes → bytes, without the flag."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
        for raw_name, content in (unflagged or {}).items():
            archive.writestr(UnflaggedNameZipInfo(raw_name), content)
    return path


def write_folder(root: Path, members: dict) -> Path:
    for name, content in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def run(argv: list, capsys) -> tuple[int, str, list[str]]:
    code = main([str(argument) for argument in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def read_output(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines()]
    return json.loads(text)


# ----------------------------------------------------------------------------------------------------------------
# The real archive


def reference_flatten(archive_path: Path) -> tuple[list[dict], Counter]:
    """Every annotation of the archive as a record, read with nothing but zipfile and json (independent of the code)."""
    records = []
    with zipfile.ZipFile(archive_path) as archive:
        for info in sorted(archive.infolist(), key=lambda info: info.filename):
            data = json.loads(archive.read(info).decode("utf-8-sig"))
            meta = data["metaData"]
            for item in data["annotation"]:
                value = item["value"]
                records.append(
                    {
                        "sentence": item["text"].strip(),
                        "label": item["label"],
                        "polarity": value["극성"],
                        "tense": value["시제"],
                        "certainty": value["확실성"],
                        "doc_id": meta["ID"],
                        "media_type": meta["MEDIA_TYPE"],
                        "category": meta["CATEGORY"],
                        "source": f"{archive_path.name}/{info.filename}",
                    }
                )
    return records, Counter(record["label"] for record in records)


@pytest.fixture(scope="module")
def real_reference():
    if not REAL_ARCHIVE.exists():
        pytest.skip(f"{REAL_ARCHIVE} not present")
    return reference_flatten(REAL_ARCHIVE)


def test_real_archive_counts_duplicates_and_conflicts(real_reference, tmp_path, capsys):
    records, label_counts = real_reference
    labels_per_sentence: dict[str, list[str]] = {}
    for record in records:
        labels_per_sentence.setdefault(record["sentence"], []).append(record["label"])
    repeated = {sentence for sentence, labels in labels_per_sentence.items() if len(labels) > 1}
    conflicting = {sentence for sentence, labels in labels_per_sentence.items() if len(set(labels)) > 1}
    first_copies = {}
    for record in records:
        first_copies.setdefault(record["sentence"], record)
    expected = {sentence: record for sentence, record in first_copies.items() if sentence not in conflicting}

    # The data README's figures for this archive; its "89 repeated, 12 conflicting" are not what exact-text matching
    # gives (69 and 9, also with whitespace collapsed), so the independent count above is the reference.
    assert len(records) == 7086
    assert label_counts == {"사실형": 5629, "추론형": 989, "예측형": 361, "대화형": 107}
    assert (len(repeated), len(conflicting)) == (69, 9)

    prepared = prepare([REAL_ARCHIVE])
    assert prepared.sentences_read == len(records)
    assert prepared.sources[0].labels == label_counts
    assert prepared.sources[0].documents == 432
    assert prepared.repeated_sentences == len(repeated)
    assert {conflict.sentence for conflict in prepared.conflicts} == conflicting
    assert prepared.duplicates_dropped == sum(len(labels_per_sentence[s]) - 1 for s in repeated - conflicting)

    output = tmp_path / "all_train.jsonl"
    code, out, err = run([REAL_ARCHIVE, "--output", output], capsys)
    assert code == 0
    written = read_output(output)
    assert len(written) == len(expected)
    assert {record["sentence"]: record for record in written} == expected
    assert all(list(record) == RECORD_KEYS for record in written)
    assert Counter(record["label"] for record in written) == Counter(record["label"] for record in expected.values())
    assert "7086" in out and f"wrote {len(expected)} records" in out
    assert sum("conflicting labels" in line for line in err) == len(conflicting)


def test_real_archive_keep_conflicts_keeps_every_distinct_sentence(real_reference, tmp_path, capsys):
    records, _ = real_reference
    output = tmp_path / "all_train.json"
    code, _, _ = run([REAL_ARCHIVE, "--output", output, "--keep-conflicts"], capsys)
    assert code == 0
    assert len(read_output(output)) == len({record["sentence"] for record in records})


# ----------------------------------------------------------------------------------------------------------------
# Malformed documents and annotations

GOOD_SENTENCE = "시립도서관은 이번 주말 야간 개관 시간을 두 시간 늘렸다."
PARTIAL_SENTENCE = "그 결정은 예산 부족을 고려한 현실적 선택으로 보인다."


def malformed_archive(path: Path) -> Path:
    return write_zip(
        path,
        {
            "문서/좋은문서.json": as_bytes(document(annotation(GOOD_SENTENCE, "사실형")), bom=True),
            "문서/깨진문서.json": b'{"annotation": [{"text": "\xec\x98\xa4',
            "문서/주석없음.json": as_bytes({"metaData": {"ID": "1"}}),
            "문서/주석이객체.json": as_bytes({"annotation": {"text": "하나", "label": "사실형"}}),
            "문서/최상위배열.json": as_bytes([document(annotation("배열 안의 문장이다.", "사실형"))]),
            "문서/인코딩.json": json.dumps(
                document(annotation("완성형 문장이다.", "사실형")), ensure_ascii=False
            ).encode("cp949"),
            "문서/일부만.json": as_bytes(
                document(
                    annotation(PARTIAL_SENTENCE, "추론형", tense="현재", certainty="불확실"),
                    annotation(None, "사실형"),
                    annotation("   ", "사실형"),
                    {"text": "라벨이 빠진 문장이다.", "value": {}},
                    annotation("주관형이라는 라벨은 없다.", "주관형"),
                    "문자열 주석",
                    doc_id=77,
                )
            ),
            "문서/설명.txt": b"not a document",
            "__MACOSX/문서/._좋은문서.json": b"\x00\x05\x16\x07 resource fork",
        },
    )


def test_malformed_documents_and_annotations_are_reported_and_skipped(tmp_path, capsys):
    archive = malformed_archive(tmp_path / "TL_테스트_경제.zip")
    output = tmp_path / "out.json"
    code, _, err = run([archive, "--output", output], capsys)
    assert code == 0
    written = read_output(output)
    assert written == [
        {
            "sentence": PARTIAL_SENTENCE,
            "label": "추론형",
            "polarity": "긍정",
            "tense": "현재",
            "certainty": "불확실",
            "doc_id": "77",
            "media_type": "뉴스",
            "category": "경제",
            "source": "TL_테스트_경제.zip/문서/일부만.json",
        },
        {
            "sentence": GOOD_SENTENCE,
            "label": "사실형",
            "polarity": "긍정",
            "tense": "과거",
            "certainty": "확실",
            "doc_id": "900001",
            "media_type": "뉴스",
            "category": "경제",
            "source": "TL_테스트_경제.zip/문서/좋은문서.json",
        },
    ]
    expected_problems = {
        "TL_테스트_경제.zip/문서/깨진문서.json": "invalid JSON",
        "TL_테스트_경제.zip/문서/주석없음.json": "no 'annotation'",
        "TL_테스트_경제.zip/문서/주석이객체.json": "not a list",
        "TL_테스트_경제.zip/문서/최상위배열.json": "not an object",
        "TL_테스트_경제.zip/문서/인코딩.json": "not UTF-8",
        "TL_테스트_경제.zip/문서/일부만.json annotation 1": "no 'text'",
        "TL_테스트_경제.zip/문서/일부만.json annotation 2": "empty",
        "TL_테스트_경제.zip/문서/일부만.json annotation 3": "no 'label'",
        "TL_테스트_경제.zip/문서/일부만.json annotation 4": "'주관형'",
        "TL_테스트_경제.zip/문서/일부만.json annotation 5": "not an object",
    }
    skipped = [line for line in err if "skipped" in line]
    assert len(skipped) == len(expected_problems), err
    for where, reason in expected_problems.items():
        assert any(f"skipped {where}:" in line and reason in line for line in skipped), (where, err)
    assert not any("설명.txt" in line or "MACOSX" in line for line in err)

    stats = prepare([archive]).sources[0]
    assert (stats.documents, stats.skipped_documents, stats.skipped_annotations) == (7, 5, 5)


def test_corrupt_archive_member_is_skipped_and_the_rest_kept(tmp_path, capsys):
    sentence = "올해 첫 눈은 평년보다 닷새 늦게 내렸다."
    archive = write_zip(
        tmp_path / "TL_손상.zip",
        {
            "손상.json": as_bytes(document(annotation("손상된 문서의 문장이다. " * 20, "사실형"))),
            "정상.json": as_bytes(document(annotation(sentence, "사실형"))),
        },
    )
    with zipfile.ZipFile(archive) as raw:
        damaged = raw.getinfo("손상.json")
    data = bytearray(archive.read_bytes())
    start = damaged.header_offset + 30 + len(damaged.filename.encode()) + len(damaged.extra)
    data[start + damaged.compress_size // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    output = tmp_path / "out.json"
    code, _, err = run([archive, "--output", output], capsys)
    assert code == 0
    assert [record["sentence"] for record in read_output(output)] == [sentence]
    assert len(err) == 1 and "skipped TL_손상.zip/손상.json: unreadable archive member" in err[0]


def test_member_names_without_utf8_flag_are_decoded(tmp_path, capsys):
    broken = b"{ not json"
    names = {
        "윈도우/압축한/문서.json".encode("cp949"): as_bytes(
            document(annotation("은행 창구 대기 시간이 줄었다.", "사실형"))
        ),
        "리눅스/이름.json".encode(): broken,
    }
    archive = write_zip(tmp_path / "VL_테스트.zip", {"정상/플래그.json": broken}, unflagged=names)
    with zipfile.ZipFile(archive) as raw:  # stored as Windows tools store them: zipfile alone shows mojibake
        flags = {info.filename: info.flag_bits & 0x800 for info in raw.infolist()}
    assert sorted(flags.values()) == [0, 0, 0x800]
    assert "윈도우/압축한/문서.json" not in flags
    output = tmp_path / "out.jsonl"
    code, _, err = run([archive, "--output", output], capsys)
    assert code == 0
    assert [record["source"] for record in read_output(output)] == ["VL_테스트.zip/윈도우/압축한/문서.json"]
    assert any("skipped VL_테스트.zip/리눅스/이름.json:" in line for line in err)
    assert any("skipped VL_테스트.zip/정상/플래그.json:" in line for line in err)


def test_nested_folders_and_single_files(tmp_path, capsys):
    folder = write_folder(
        tmp_path / "라벨링데이터",
        {
            "TL_뉴스/가/나/깊은문서.json": as_bytes(document(annotation("항구의 물동량이 석 달째 늘었다.", "사실형"))),
            "TL_뉴스/얕은문서.json": as_bytes(
                document(annotation("장마는 다음 주 중반에 시작될 전망이다.", "예측형", tense="미래"), doc_id="5"),
                bom=True,
            ),
            "TL_뉴스/가/메모.txt": b"ignored",
        },
    )
    single = tmp_path / "따로.json"
    single.write_bytes(as_bytes(document(annotation("\u201c이 길이 맞나요?\u201d", "대화형"), media="구어")))
    output = tmp_path / "out.json"
    code, out, _ = run([folder, single, "--output", output], capsys)
    assert code == 0
    written = read_output(output)
    assert [(record["source"], record["label"]) for record in written] == [
        ("라벨링데이터/TL_뉴스/가/나/깊은문서.json", "사실형"),
        ("라벨링데이터/TL_뉴스/얕은문서.json", "예측형"),
        ("따로.json", "대화형"),
    ]
    assert written[1]["doc_id"] == "5" and written[1]["tense"] == "미래"
    assert written[2]["media_type"] == "구어"
    assert "라벨링데이터" in out and "따로.json" in out


# ----------------------------------------------------------------------------------------------------------------
# Duplicates and conflicts


def duplicate_inputs(tmp_path: Path) -> list[Path]:
    """Two inputs sharing sentences: same label (duplicates), different labels (conflicts), a majority and a tie."""
    archive = write_zip(
        tmp_path / "TL_가.zip",
        {
            "a.json": as_bytes(
                document(
                    annotation("시내버스 요금이 이달부터 올랐다.", "사실형"),
                    annotation("  시내버스 요금이 이달부터 올랐다. ", "사실형"),
                    annotation("수출 둔화가 고용에도 영향을 준 것으로 풀이된다.", "추론형"),
                    annotation("시의회는 내년 초 조례를 개정할 계획이다.", "예측형"),
                    annotation("공장 가동률이 두 달 연속 낮아졌다.", "추론형"),
                )
            ),
        },
    )
    folder = write_folder(
        tmp_path / "VL_나",
        {
            "b.json": as_bytes(
                document(
                    annotation("시내버스 요금이 이달부터 올랐다.", "사실형"),
                    annotation("수출 둔화가 고용에도 영향을 준 것으로 풀이된다.", "사실형"),
                    annotation("시의회는 내년 초 조례를 개정할 계획이다.", "사실형"),
                    annotation("공장 가동률이 두 달 연속 낮아졌다.", "사실형"),
                    annotation("공장 가동률이 두 달 연속 낮아졌다.", "사실형"),
                    annotation("오늘 점심은 뭐 먹을까요?", "대화형"),
                )
            ),
        },
    )
    return [archive, folder]


def test_duplicates_dropped_and_conflicts_dropped_by_default(tmp_path, capsys):
    output = tmp_path / "out.json"
    conflicts_file = tmp_path / "conflicts.jsonl"
    code, out, err = run(
        [*duplicate_inputs(tmp_path), "--output", output, "--conflicts_output", conflicts_file], capsys
    )
    assert code == 0
    assert [(record["sentence"], record["label"], record["source"]) for record in read_output(output)] == [
        ("시내버스 요금이 이달부터 올랐다.", "사실형", "TL_가.zip/a.json"),
        ("오늘 점심은 뭐 먹을까요?", "대화형", "VL_나/b.json"),
    ]
    conflict_lines = [line for line in err if "conflicting labels" in line]
    assert len(conflict_lines) == 3
    assert any(
        "수출 둔화가" in line and "TL_가.zip/a.json" in line and "VL_나/b.json" in line for line in conflict_lines
    )
    saved = [json.loads(line) for line in conflicts_file.read_text(encoding="utf-8").splitlines()]
    assert {row["sentence"]: row["labels"] for row in saved} == {
        "수출 둔화가 고용에도 영향을 준 것으로 풀이된다.": {"추론형": 1, "사실형": 1},
        "시의회는 내년 초 조례를 개정할 계획이다.": {"예측형": 1, "사실형": 1},
        "공장 가동률이 두 달 연속 낮아졌다.": {"추론형": 1, "사실형": 2},
    }
    prepared = prepare(duplicate_inputs(tmp_path))
    assert (prepared.sentences_read, prepared.repeated_sentences, prepared.duplicates_dropped) == (11, 4, 2)
    assert prepared.conflict_copies_dropped == 7
    assert "repeated sentences: 4" in out and "exact duplicates dropped: 2" in out


def test_keep_conflicts_takes_the_majority_then_the_first_label(tmp_path, capsys):
    output = tmp_path / "out.jsonl"
    code, _, _ = run([*duplicate_inputs(tmp_path), "--output", output, "--keep-conflicts"], capsys)
    assert code == 0
    assert [(record["sentence"], record["label"], record["source"]) for record in read_output(output)] == [
        ("시내버스 요금이 이달부터 올랐다.", "사실형", "TL_가.zip/a.json"),
        ("수출 둔화가 고용에도 영향을 준 것으로 풀이된다.", "추론형", "TL_가.zip/a.json"),  # tie: first seen
        ("시의회는 내년 초 조례를 개정할 계획이다.", "예측형", "TL_가.zip/a.json"),  # tie: first seen
        ("공장 가동률이 두 달 연속 낮아졌다.", "사실형", "VL_나/b.json"),  # 2 against 1
        ("오늘 점심은 뭐 먹을까요?", "대화형", "VL_나/b.json"),
    ]


# ----------------------------------------------------------------------------------------------------------------
# Output format and whole-run errors


def test_json_and_json_lines_outputs_are_utf8_and_complete(tmp_path, capsys):
    inputs = duplicate_inputs(tmp_path)
    for name in ("out.json", "out.jsonl"):
        code, _, _ = run([*inputs, "--output", tmp_path / "새 폴더" / name], capsys)
        assert code == 0
    as_array = (tmp_path / "새 폴더" / "out.json").read_bytes()
    as_lines = (tmp_path / "새 폴더" / "out.jsonl").read_bytes()
    assert "오늘 점심은".encode() in as_array and b"\\u" not in as_array  # ensure_ascii=False
    assert json.loads(as_array) == [json.loads(line) for line in as_lines.splitlines()]
    assert sorted(path.name for path in (tmp_path / "새 폴더").iterdir()) == ["out.json", "out.jsonl"]  # no temp files


def test_empty_result_is_an_error_and_writes_nothing(tmp_path, capsys):
    archive = write_zip(
        tmp_path / "TL_빈.zip",
        {"x.json": b"[]", "y.json": as_bytes(document(annotation("이런 라벨은 없다.", "기타형"))), "z.txt": b""},
    )
    output = tmp_path / "out.json"
    output.write_text("previous run", encoding="utf-8")
    code, _, err = run([archive, "--output", output], capsys)
    assert code == 1
    assert "no sentences left to write" in err[-1] and str(output) in err[-1]
    assert output.read_text(encoding="utf-8") == "previous run"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["TL_빈.zip", "out.json"]


def test_missing_input_is_a_one_line_error_from_the_command_line(tmp_path):
    output = tmp_path / "out.json"
    completed = subprocess.run(
        [sys.executable, "prepare_aihub.py", str(tmp_path / "TL_없음.zip"), "--output", str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"kosenttype-prepare-aihub: error: input not found: {tmp_path / 'TL_없음.zip'}"
    ]
    assert not output.exists()


@pytest.mark.parametrize("name, content", [("TL_가짜.zip", b"PK not really a zip"), ("notes.txt", b"hello")])
def test_input_that_is_not_an_archive_is_a_one_line_error(tmp_path, capsys, name, content):
    bad = tmp_path / name
    bad.write_bytes(content)
    code, out, err = run([bad, "--output", tmp_path / "out.json"], capsys)
    assert code == 2
    assert len(err) == 1 and str(bad) in err[0] and out == ""
    assert not (tmp_path / "out.json").exists()


def test_atomic_write_keeps_the_previous_file_when_writing_fails(tmp_path):
    target = tmp_path / "records.json"
    target.write_text("complete old content", encoding="utf-8")

    def failing_pieces():
        yield "half of the new"
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError):
        write_text_atomically(target, failing_pieces())
    assert target.read_text(encoding="utf-8") == "complete old content"
    assert [path.name for path in tmp_path.iterdir()] == ["records.json"]
    write_text_atomically(target, ["새 ", "내용"])
    assert target.read_text(encoding="utf-8") == "새 내용"


# ----------------------------------------------------------------------------------------------------------------
# Hostile documents: each is skipped with its report line, never a traceback, and the rest is written


def strict_json_lines(path: Path) -> list[dict]:
    """Parse as JSON Lines refusing anything Python's json tolerates but JSON forbids (NaN, lone surrogates)."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    text = path.read_bytes().decode("utf-8")  # strict: a lone surrogate can't have been written as UTF-8
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def test_deeply_nested_document_is_skipped_not_fatal(tmp_path, capsys):
    depth = sys.getrecursionlimit() * 20
    nested = b'{"annotation": [' + b"[" * depth + b"]" * depth + b"]}"
    archive = write_zip(
        tmp_path / "TL_깊이.zip",
        {"깊은.json": nested, "정상.json": as_bytes(document(annotation(GOOD_SENTENCE, "사실형")))},
    )
    output = tmp_path / "out.jsonl"
    code, _, err = run([archive, "--output", output], capsys)
    assert code == 0
    assert [record["sentence"] for record in strict_json_lines(output)] == [GOOD_SENTENCE]
    assert err == ["kosenttype-prepare-aihub: skipped TL_깊이.zip/깊은.json: JSON nested too deeply to read"]


def test_lone_surrogate_escape_skips_that_annotation_only(tmp_path, capsys):
    # Written as raw JSON text: the escapes must reach the parser as escapes.
    raw = (
        '{"annotation": ['
        '{"text": "\\ud800 고장 난 문장이다.", "label": "사실형"},'
        '{"text": "이모지 \\ud83d\\ude0a 는 짝이 맞는 서로게이트다.", "label": "대화형"},'
        f'{{"text": "{PARTIAL_SENTENCE}", "label": "추론형", "value": {{"극성": "\\udfff"}}}},'
        f'{{"text": "{GOOD_SENTENCE}", "label": "사실형"}}'
        '], "metaData": {"ID": "7"}}'
    )
    single = tmp_path / "서로게이트.json"
    single.write_text(raw, encoding="utf-8")
    output = tmp_path / "out.jsonl"
    code, _, err = run([single, "--output", output], capsys)
    assert code == 0
    written = strict_json_lines(output)
    assert [record["sentence"] for record in written] == ["이모지 \U0001f60a 는 짝이 맞는 서로게이트다.", GOOD_SENTENCE]
    assert len(err) == 2
    assert err[0].startswith("kosenttype-prepare-aihub: skipped 서로게이트.json annotation 0: has a lone surrogate")
    assert "annotation 2:" in err[1] and "polarity" in err[1]


def test_utf16_document_is_read_like_its_utf8_copy(tmp_path, capsys):
    data = document(annotation(GOOD_SENTENCE, "사실형"), annotation(PARTIAL_SENTENCE, "추론형"), doc_id="16")
    folder = write_folder(
        tmp_path / "인코딩",
        {"utf16.json": json.dumps(data, ensure_ascii=False).encode("utf-16"), "utf8.json": as_bytes(data)},
    )
    output = tmp_path / "out.jsonl"
    code, _, err = run([folder, "--output", output, "--keep-conflicts"], capsys)
    assert code == 0 and err == []
    prepared = prepare([folder])
    assert (prepared.sentences_read, prepared.duplicates_dropped) == (4, 2)  # each sentence read from both files
    assert [(record["sentence"], record["doc_id"]) for record in strict_json_lines(output)] == [
        (GOOD_SENTENCE, "16"),
        (PARTIAL_SENTENCE, "16"),
    ]


def test_empty_inputs(tmp_path, capsys):
    empty_archive = write_zip(tmp_path / "TL_빈.zip", {})
    code, _, err = run([empty_archive, "--output", tmp_path / "out.json"], capsys)
    assert code == 1 and "no sentences left to write (0 read, 0 problems)" in err[-1]

    empty_document = tmp_path / "빈.json"
    empty_document.write_bytes(b"")
    code, _, err = run([empty_document, "--output", tmp_path / "out.json"], capsys)
    assert code == 1 and err[0].startswith("kosenttype-prepare-aihub: skipped 빈.json: invalid JSON")

    zero_byte_archive = tmp_path / "TL_0.zip"
    zero_byte_archive.write_bytes(b"")
    code, _, err = run([zero_byte_archive, "--output", tmp_path / "out.json"], capsys)
    assert code == 2 and err == [
        f"kosenttype-prepare-aihub: error: {zero_byte_archive}: not a zip archive, a folder or a .json file"
    ]
    assert not (tmp_path / "out.json").exists()


def test_text_too_long_for_one_sentence_is_skipped(tmp_path, capsys):
    from kosenttype import prepare_aihub

    limit = prepare_aihub.MAX_SENTENCE_CHARACTERS
    single = tmp_path / "긴글.json"
    single.write_bytes(as_bytes(document(annotation("가" * (limit + 1), "사실형"), annotation("나" * limit, "사실형"))))
    output = tmp_path / "out.jsonl"
    code, _, err = run([single, "--output", output], capsys)
    assert code == 0
    assert [len(record["sentence"]) for record in strict_json_lines(output)] == [limit]
    assert len(err) == 1 and "annotation 0:" in err[0] and f"{limit + 1} characters" in err[0]


def lie_about_size(archive: Path, member: str, declared: int) -> None:
    """Rewrite the member's uncompressed size in its local header and the central directory."""
    with zipfile.ZipFile(archive) as raw:
        info = raw.getinfo(member)
    data = bytearray(archive.read_bytes())
    data[info.header_offset + 22 : info.header_offset + 26] = declared.to_bytes(4, "little")
    central = data.find(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(member.encode())] != member.encode():
        central = data.find(b"PK\x01\x02", central + 4)
    data[central + 24 : central + 28] = declared.to_bytes(4, "little")
    archive.write_bytes(bytes(data))


def test_members_whose_sizes_lie_or_are_too_large(tmp_path, capsys, monkeypatch):
    from kosenttype import prepare_aihub

    sentences = {name: f"{name} 문서에서 온 문장이다." for name in ("작게속임", "크게속임", "거대", "정상")}
    archive = write_zip(
        tmp_path / "TL_크기.zip",
        {f"{name}.json": as_bytes(document(annotation(text, "사실형"))) for name, text in sentences.items()},
    )
    lie_about_size(archive, "작게속임.json", 10)  # zipfile stops at the declared size: the CRC then fails
    lie_about_size(archive, "크게속임.json", 900)  # declared larger than it is: read as what it is
    lie_about_size(archive, "거대.json", 4_000_000_000)  # a zip bomb's honest header: never read
    monkeypatch.setattr(prepare_aihub, "MAX_DOCUMENT_BYTES", 1000)
    big_file = tmp_path / "큰파일.json"
    big_file.write_bytes(as_bytes(document(annotation("큰 파일의 문장이다. " * 60, "사실형"))))
    output = tmp_path / "out.jsonl"
    code, _, err = run([archive, big_file, "--output", output], capsys)
    assert code == 0
    assert sorted(record["sentence"] for record in strict_json_lines(output)) == sorted(
        [sentences["크게속임"], sentences["정상"]]
    )
    assert len(err) == 3
    assert any("TL_크기.zip/작게속임.json: unreadable archive member" in line for line in err)
    assert any("TL_크기.zip/거대.json: 4000000000 bytes, more than" in line for line in err)
    assert any(f"skipped 큰파일.json: {big_file.stat().st_size} bytes, more than" in line for line in err)


def test_odd_file_names_keep_reports_on_one_line_and_output_writable(tmp_path, capsys):
    folder = tmp_path / "이름들"
    folder.mkdir()
    undecodable = os.fsencode(folder) + b"/\xff\xfe.json"
    with open(undecodable, "wb") as handle:
        handle.write(as_bytes(document(annotation(GOOD_SENTENCE, "사실형"))))
    archive = write_zip(tmp_path / "TL_줄바꿈.zip", {"둘로\n나뉜.json": b"{ broken"})
    output = tmp_path / "out.jsonl"
    code, out, err = run([folder, archive, "--output", output], capsys)
    assert code == 0
    assert [record["source"] for record in strict_json_lines(output)] == ["이름들/\\xff\\xfe.json"]
    assert [line.split()[0] for line in out.splitlines()[2:4]] == ["이름들", "TL_줄바꿈.zip"]
    assert len(err) == 1 and err[0].startswith("kosenttype-prepare-aihub: skipped TL_줄바꿈.zip/둘로\\n나뉜.json:")


def test_list_or_object_values_become_null(tmp_path, capsys):
    item = annotation(GOOD_SENTENCE, "사실형")
    item["value"]["극성"] = ["긍정", "부정"]
    data = document(item)
    data["metaData"]["CATEGORY"] = {"대분류": "경제"}
    data["metaData"]["ID"] = 31
    single = tmp_path / "값.json"
    single.write_bytes(as_bytes(data))
    output = tmp_path / "out.jsonl"
    assert run([single, "--output", output], capsys)[0] == 0
    [record] = strict_json_lines(output)
    assert (record["polarity"], record["category"], record["doc_id"], record["tense"]) == (None, None, "31", "과거")
