"""kosenttype: a Korean sentence-type classifier (사실형 / 추론형 / 예측형 / 대화형) packaged for the Hugging Face Hub.

Imports neither torch nor transformers: the model classes load on first use and register with the Auto classes as
soon as transformers is imported, so installed users load saved folders without `trust_remote_code`.
"""

from __future__ import annotations

import importlib
from typing import Any

from .auto_registration import register_auto_classes, register_when_transformers_is_imported

_LAZY_NAMES = {
    "SENTENCE_TYPES": "configuration_kosenttype",
    "KoSentTypeConfig": "configuration_kosenttype",
    "KoSentTypeForSequenceClassification": "modeling_kosenttype",
    "KoSentTypeModel": "modeling_kosenttype",
    "KoSentTypePreTrainedModel": "modeling_kosenttype",
    "KoSentTypeSequenceClassifierOutput": "modeling_kosenttype",
    "ATTRIBUTE_LABELS": "configuration_kosenttype",
    "mean_pooling": "modeling_kosenttype",
}

__all__ = ["register_auto_classes", *_LAZY_NAMES]
__version__ = "0.2.0"

register_when_transformers_is_imported()


def __getattr__(name: str) -> Any:
    """The model classes, imported on first use (PEP 562); transformers first, so registration is never circular."""
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    importlib.import_module("transformers")
    value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    globals()[name] = value
    return value
