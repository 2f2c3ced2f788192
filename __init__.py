"""kosenttype: a Korean sentence-type classifier (사실형 / 추론형 / 예측형 / 대화형) packaged for the Hugging Face Hub.

Importing the package registers the model with the Auto classes, so installed users load saved folders
without `trust_remote_code`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .configuration_kosenttype import SENTENCE_TYPES, KoSentTypeConfig
from .modeling_kosenttype import (
    KoSentTypeForSequenceClassification,
    KoSentTypeModel,
    KoSentTypePreTrainedModel,
    mean_pooling,
)

AutoConfig.register(KoSentTypeConfig.model_type, KoSentTypeConfig, exist_ok=True)
AutoModel.register(KoSentTypeConfig, KoSentTypeModel, exist_ok=True)
AutoModelForSequenceClassification.register(KoSentTypeConfig, KoSentTypeForSequenceClassification, exist_ok=True)

__all__ = [
    "SENTENCE_TYPES",
    "KoSentTypeConfig",
    "KoSentTypeForSequenceClassification",
    "KoSentTypeModel",
    "KoSentTypePreTrainedModel",
    "mean_pooling",
]
__version__ = "0.1.0"
