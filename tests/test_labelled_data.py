"""labelled_data: every row of a labelled file is read, once, as written — or the run stops at the row that breaks.

The expectations are the rows as written here (by Python's csv writer or by hand), never the reader's own output.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from kosenttype import SENTENCE_TYPES
from kosenttype.errors import KoSentTypeError
from kosenttype.labelled_data import Example, read_labelled_file

# Texts that pandas, left to itself, would turn into missing values or numbers, or split at the wrong place.
TRICKY_TEXTS = [
    "쉼표, 그리고 또 쉼표가 있는 문장이다.",
    '그는 "네"라고 짧게 답했다.',
    "NA",
    "null",
    "2024",
    "  앞뒤에 공백이 있다.  ",
    "#으로 시작하는 문장도 문장이다.",
]


def write_rows(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(["sentence", "label"])
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(("suffix", "delimiter"), [(".csv", ","), (".tsv", "\t")])
def test_every_row_is_read_once_and_as_written(tmp_path, suffix, delimiter):
    rows = [[text, str(index % 4)] for index, text in enumerate(TRICKY_TEXTS)]
    examples = read_labelled_file(write_rows(tmp_path / f"tricky{suffix}", rows, delimiter), SENTENCE_TYPES)
    assert examples == [Example(text.strip(), index % 4) for index, text in enumerate(TRICKY_TEXTS)]


def test_labels_may_mix_names_and_ids_in_one_file(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"sentence": "가", "label": "추론형"}\n{"sentence": "나", "label": 3}\n', encoding="utf-8")
    assert read_labelled_file(path, SENTENCE_TYPES) == [Example("가", 1), Example("나", 3)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # The example: the quote opened on line 2 would swallow line 3 into its text.
        (
            'sentence,label\n"닫히지 않은 따옴표,0\n멀쩡한 문장.,1\n',
            r"line 2: a quoted field opened here is not closed",
        ),
        (
            'sentence,label\n첫 문장.,0\n"마지막 줄에서 열린 따옴표,1\n',
            r"line 3: a quoted field opened here is not closed",
        ),
        ('sentence,label\n"두 줄에\n걸친 문장",0\n', r"line 2: a quoted field runs on to line 3"),
        ('sentence,label\n"닫힌" 뒤에 글자,0\n', r"line 2: a quoted field opened here is not closed properly"),
        ("sentence,label\n-1을 라벨로,-1\n", r"line 2: unknown label '-1'"),
        ("sentence,sentence,label\n가,나,0\n", r"line 1: the header has an empty or repeated column name"),
    ],
)
def test_broken_quoting_and_odd_values_stop_at_their_row(tmp_path, content, message):
    path = tmp_path / "broken.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(KoSentTypeError, match=rf"broken\.csv: {message}"):
        read_labelled_file(path, SENTENCE_TYPES)


def test_a_quote_left_open_in_a_large_file_names_its_row(tmp_path):
    """Past the csv module's field limit (128 KiB) the swallowed rows used to surface as a bare csv error."""
    rows = [f"{index}번째 문장입니다.,{index % 4}" for index in range(20_000)]
    rows[5] = '"' + rows[5]
    path = tmp_path / "large.csv"
    path.write_text("sentence,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(KoSentTypeError, match=r"large\.csv: line 7: a quoted field opened here is not closed"):
        read_labelled_file(path, SENTENCE_TYPES)
