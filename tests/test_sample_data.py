"""data/sample_sentences.jsonl: the toy set written for the quickstart, and the guard against copied sentences."""

from __future__ import annotations

import csv
import json
import re
import zipfile
from collections import Counter

import pytest
from conftest import REPO_ROOT, SHARED_DATA

SAMPLE_FILE = REPO_ROOT / "data" / "sample_sentences.jsonl"
LABELS = {"사실형", "추론형", "예측형", "대화형"}
# The intended mix (data/README.md), as share ranges: news-like, with 사실형 dominant.
SHARE_RANGES = {"사실형": (0.50, 0.60), "추론형": (0.16, 0.24), "예측형": (0.10, 0.16), "대화형": (0.09, 0.15)}


def normalized(sentence: str) -> str:
    """Whitespace collapsed, so a copy that differs only in spacing still counts as a copy."""
    return " ".join(sentence.split())


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    lines = SAMPLE_FILE.read_text(encoding="utf-8").splitlines()
    parsed = []
    for number, line in enumerate(lines, start=1):
        row = json.loads(line)
        assert isinstance(row, dict) and set(row) == {"sentence", "label", "id"}, f"line {number}: {line}"
        parsed.append(row)
    return parsed


def test_rows_are_labelled_sentences(rows):
    assert 400 <= len(rows) <= 480
    for row in rows:
        assert row["label"] in LABELS, row
        assert isinstance(row["sentence"], str) and row["sentence"] == row["sentence"].strip(), row
        assert 5 <= len(row["sentence"].split()) <= 60, row
        assert re.search("[가-힣]", row["sentence"]), row


def test_label_mix_is_the_intended_one(rows):
    counts = Counter(row["label"] for row in rows)
    assert set(counts) == LABELS
    for label, (low, high) in SHARE_RANGES.items():
        assert low <= counts[label] / len(rows) <= high, (label, counts)


def test_sentences_and_ids_are_unique(rows):
    sentences = Counter(normalized(row["sentence"]) for row in rows)
    assert [sentence for sentence, count in sentences.items() if count > 1] == []
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"kst-\d{4}", identifier) for identifier in ids)


def real_sentences() -> set[str]:
    """Every sentence of the real labelled data present on this machine (DACON CSV and AI Hub archives)."""
    sentences = set()
    dacon = SHARED_DATA / "dacon" / "train.csv"
    if dacon.exists():
        with open(dacon, encoding="utf-8", newline="") as handle:
            sentences.update(normalized(row["문장"]) for row in csv.DictReader(handle))
    for archive_path in sorted((SHARED_DATA / "aihub").glob("*.zip")):
        with zipfile.ZipFile(archive_path) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".json"):
                    document = json.loads(archive.read(info).decode("utf-8-sig"))
                    sentences.update(normalized(item["text"]) for item in document["annotation"])
    return sentences


def test_no_sentence_is_copied_from_the_real_data(rows):
    real = real_sentences()
    if not real:
        pytest.skip(f"no real data under {SHARED_DATA}")
    copied = [row["id"] for row in rows if normalized(row["sentence"]) in real]
    assert copied == [], f"sentences found in the real data: {copied}"
