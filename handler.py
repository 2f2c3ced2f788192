"""A Hugging Face Inference Endpoints custom handler (`EndpointHandler`): `kosenttype-serve`'s POST / answers, one
request at a time, without dynamic batching. Copy it into the model repository as `handler.py`, with a
`requirements.txt` holding `kosenttype[serve]` (docs/serving.md)."""

from __future__ import annotations

from typing import Any

from kosenttype.engine import TYPE_HEAD, EngineSettings, load_classifier
from kosenttype.server_app import (
    ServingLimits,
    TextClassificationRequest,
    checked_texts,
    refuse_non_finite,
    text_classification_output,
)


class EndpointHandler:
    """`EndpointHandler(path)(data)`, `data` = {"inputs": str | [str], "parameters": {"top_k", ...}}; bad input
    raises `ApiError` (or pydantic's `ValidationError`), which the endpoint returns as an error response."""

    def __init__(self, path: str = "", precision: str = "auto") -> None:
        self.classifier = load_classifier(path or ".", precision=precision)
        self.limits = ServingLimits()

    def __call__(self, data: dict[str, Any]) -> list[list[dict[str, Any]]]:
        request = TextClassificationRequest.model_validate(data)
        texts = checked_texts(*request.sentences(), self.limits)
        logits = self.classifier.logits(texts, EngineSettings(max_length=self.limits.max_length))
        refuse_non_finite(logits.values())
        return text_classification_output(self.classifier, list(logits[TYPE_HEAD]), request.parameters)
