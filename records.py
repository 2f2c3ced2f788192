"""What flows through prediction: input records (a sentence or the reason it can't be one) and predictions.

Shared by the command, the engine, the server and the distributed runner; pure Python, no torch.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any

SCORE_DECIMALS = 6


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
    """The result for one input record, in input order.

    `top_k` holds (label, probability) pairs of the sentence type, most probable first; `label`/`score` are its first
    pair. `attributes` maps each attribute head (polarity, tense, certainty) to its most probable (label, score), for
    models that have such heads. A record that couldn't be classified has `error` set and no label.
    """

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
    return None if score is None else round(score, SCORE_DECIMALS)


def is_blank(text: str) -> bool:
    """Nothing to classify: only whitespace, control characters (NUL included) or format characters."""
    return all(character.isspace() or unicodedata.category(character)[0] == "C" for character in text)


def text_error(text: Any, where: str) -> LineError | None:
    """The error of a would-be sentence, if any: not a string, blank, or carrying bytes that weren't UTF-8."""
    if not isinstance(text, str):
        shown = "NaN" if isinstance(text, float) and math.isnan(text) else type(text).__name__
        return LineError("not_text", f"{where}: the text is {shown}, not a string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:  # lone surrogates: how `surrogateescape` carries undecodable bytes
        code = ord(text[error.start])
        detail = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else "a lone surrogate"
        return LineError("invalid_utf8", f"{where}: not valid UTF-8 ({detail} at character {error.start})")
    if is_blank(text):
        return LineError("empty", f"{where}: empty sentence")
    return None


def sentence_record(record_id: Any, text: Any, where: str) -> InputRecord:
    """An input record for `text`, or an error record saying why it can't be classified."""
    error = text_error(text, where)
    return InputRecord(record_id, error=error) if error else InputRecord(record_id, text=text)
