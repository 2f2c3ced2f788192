"""A Hugging Face Inference Endpoints custom handler: the same answers as `kosenttype-serve`'s POST /.

Inference Endpoints run a model repository's `handler.py` (class `EndpointHandler`) when it has one. Copy this file
into the model folder as `handler.py`, with a `requirements.txt` holding `kosenttype[serve]`, and push it; the
endpoint then answers `InferenceClient(base_url=ENDPOINT_URL).text_classification(text, top_k=k)` exactly as the
server does. Requests come one at a time here (the endpoint's own server batches nothing), so this is the
simple path; for dynamic batching run `kosenttype-serve` instead.
"""

from __future__ import annotations

from typing import Any

from kosenttype.engine import TYPE_HEAD, EngineSettings, load_classifier
from kosenttype.server_app import ServingLimits, TextClassificationRequest, checked_texts, text_classification_output


class EndpointHandler:
    """`EndpointHandler(path)(data)` with `data` = {"inputs": str | [str], "parameters": {"top_k", ...}}.

    Bad input raises an exception naming the problem (`ApiError`, or pydantic's `ValidationError` for wrong
    types), which the endpoint returns as an error response.
    """

    def __init__(self, path: str = "", precision: str = "auto") -> None:
        self.classifier = load_classifier(path or ".", precision=precision)
        self.limits = ServingLimits()

    def __call__(self, data: dict[str, Any]) -> list[list[dict[str, Any]]]:
        request = TextClassificationRequest.model_validate(data)
        texts = checked_texts(*request.sentences(), self.limits)
        logits = self.classifier.logits(texts, EngineSettings(max_length=self.limits.max_length))[TYPE_HEAD]
        return text_classification_output(self.classifier, list(logits), request.parameters)
