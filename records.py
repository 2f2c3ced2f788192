"""What flows through prediction: input records (a sentence or why it can't be one) and predictions. No torch."""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LineError:
    """Why one input record can't be classified: `kind` is the summary's key, `message` goes into the output."""

    kind: str
    message: str


@dataclass(frozen=True)
class InputRecord:
    """One input line/row: its id (the input's own id, or its line/row number) and its text or its error."""

    id: Any
    text: str | None = None
    error: LineError | None = None


@dataclass
class Prediction:
    """The result for one input record: `top_k` holds (label, probability) pairs of the sentence type, most probable
    first (`label`/`score` are the first); `attributes` each attribute head's best (label, score); or an `error`."""

    id: Any
    label: str | None = None
    score: float | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    attributes: dict[str, tuple[str, float]] | None = None
    error: LineError | None = None

    def to_record(self, with_top_k: bool) -> dict[str, Any]:
        """The output record: scores rounded, since six decimals are more than any decision needs."""
        record: dict[str, Any] = {"id": self.id, "label": self.label, "score": rounded(self.score)}
        if with_top_k and self.error is None:
            record["top_k"] = [{"label": label, "score": rounded(score)} for label, score in self.top_k]
        if self.attributes:
            record["attributes"] = {
                axis: {"label": label, "score": rounded(score)} for axis, (label, score) in self.attributes.items()
            }
        if self.error is not None:
            record["error"] = self.error.message
        return record


def rounded(score: float | None) -> float | None:
    return None if score is None else round(score, 6)


def text_error(text: Any, where: str) -> LineError | None:
    """The error of a would-be sentence, if any: not a string, carrying bytes that weren't UTF-8, or blank."""
    if not isinstance(text, str):
        shown = "NaN" if isinstance(text, float) and math.isnan(text) else type(text).__name__
        return LineError("not_text", f"{where}: the text is {shown}, not a string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:  # lone surrogates: how `surrogateescape` carries undecodable bytes
        code = ord(text[error.start])
        detail = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else "a lone surrogate"
        return LineError("invalid_utf8", f"{where}: not valid UTF-8 ({detail} at character {error.start})")
    # Blank: only whitespace, control characters (NUL included) or format characters.
    if all(character.isspace() or unicodedata.category(character)[0] == "C" for character in text):
        return LineError("empty", f"{where}: empty sentence")
    return None


def sentence_record(record_id: Any, text: Any, where: str) -> InputRecord:
    """An input record for `text`, or an error record saying why it can't be classified."""
    error = text_error(text, where)
    return InputRecord(record_id, error=error) if error else InputRecord(record_id, text=text)


@dataclass
class Outcomes:
    """How a run's records ended, for its summary line and exit status: classified, or failed by error kind."""

    classified: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def add(self, prediction: Prediction) -> None:
        if prediction.error is None:
            self.classified += 1
        else:
            self.failures[prediction.error.kind] += 1

    def summary_line(self, program: str, seconds: float, destination: str, rate_note: str = "", where: str = "") -> str:
        """`PROG: N records: C classified, F failed (kinds) in S s (R sentences/s) -> destination`."""
        failed = self.failures.total()
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.failures.items()))
        failed_part = f", {failed} failed ({kinds})" if failed else ""
        rate = self.classified / seconds if seconds > 0 else 0.0
        return (
            f"{program}: {self.classified + failed} records: {self.classified} classified{failed_part} in "
            f"{seconds:.1f} s ({rate:.1f} sentences/s{rate_note}){where} -> {destination}"
        )


def utf8_safe(text: str) -> str:
    """`text` with any lone surrogate (undecodable input bytes, a JSON `\\ud800`) written as `\\udXXX`, so it can be
    encoded as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
