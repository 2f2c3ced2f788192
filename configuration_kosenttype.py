"""Configuration of the Korean sentence-type classifier (사실형 / 추론형 / 예측형 / 대화형).

The encoder's whole configuration is nested in this one, so a saved model rebuilds offline,
without fetching the backbone it was trained from.
"""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import AutoConfig, PretrainedConfig

SENTENCE_TYPES = ("사실형", "추론형", "예측형", "대화형")
POOLING_MODES = ("mean", "cls")
DEFAULT_BACKBONE = "jhgan/ko-sroberta-multitask"
# Written into every config, so a saved classifier also opens as the bare embedding model through AutoModel.
AUTO_MAP = {
    "AutoConfig": "configuration_kosenttype.KoSentTypeConfig",
    "AutoModel": "modeling_kosenttype.KoSentTypeModel",
    "AutoModelForSequenceClassification": "modeling_kosenttype.KoSentTypeForSequenceClassification",
}

# The shape of jhgan/ko-sroberta-multitask (a KLUE RoBERTa-base): the architecture a bare
# `KoSentTypeConfig()` describes, so the published model needs no other input.
KO_SROBERTA_ENCODER = {
    "model_type": "roberta",
    "vocab_size": 32000,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}


def build_encoder_config(encoder_config: PretrainedConfig | dict[str, Any] | None) -> PretrainedConfig:
    """Turn the nested encoder description (a config, its dict form, or nothing) into a config object."""
    if isinstance(encoder_config, PretrainedConfig):
        return encoder_config
    description = dict(KO_SROBERTA_ENCODER if encoder_config is None else encoder_config)
    model_type = description.pop("model_type", None)
    if model_type is None:
        raise ValueError("encoder_config needs a 'model_type' (e.g. 'roberta', 'bert', 'electra').")
    return AutoConfig.for_model(model_type, **description)


def _default_to_sentence_types(kwargs: dict[str, Any]) -> None:
    """Fill in the seed's label names, and refuse a `num_labels` that contradicts `id2label`.

    transformers only warns about the contradiction and keeps `id2label`, which would silently build a
    head of another size than the user asked for.
    """
    id2label = kwargs.get("id2label")
    num_labels = kwargs.get("num_labels")
    if id2label is not None and num_labels is not None and len(id2label) != num_labels:
        raise ValueError(
            f"num_labels={num_labels} disagrees with id2label, which has {len(id2label)} labels: {id2label}"
        )
    if id2label is None and num_labels in (None, len(SENTENCE_TYPES)):
        kwargs.pop("num_labels", None)
        id2label = kwargs["id2label"] = dict(enumerate(SENTENCE_TYPES))
    if id2label is not None and kwargs.get("label2id") is None:
        kwargs["label2id"] = {label: int(index) for index, label in id2label.items()}


class KoSentTypeConfig(PretrainedConfig):
    r"""
    Configuration for [`KoSentTypeModel`] and [`KoSentTypeForSequenceClassification`].

    Args:
        encoder_config (`PretrainedConfig` or `dict`, *optional*):
            The full configuration of the encoder, of any type `AutoModel` knows. Defaults to the shape of
            `jhgan/ko-sroberta-multitask` (RoBERTa, 12 layers, hidden 768, vocabulary 32000).
        backbone_name (`str`, *optional*):
            Where the encoder's pretrained weights came from. Provenance only: loading never reads it.
        pooling (`str`, *optional*, defaults to `"mean"`):
            How token states become one sentence vector: `"mean"` over the attention mask, or `"cls"`.
        classifier_dropout (`float`, *optional*, defaults to 0.1):
            Dropout between the pooled vector and the linear head.
        initializer_range (`float`, *optional*):
            Standard deviation of the head's initial weights; defaults to the encoder's.

    Without `id2label` or `num_labels`, the labels are the seed model's fixed order:
    0 사실형, 1 추론형, 2 예측형, 3 대화형.
    """

    model_type = "kosenttype"
    sub_configs: ClassVar[dict[str, type]] = {"encoder_config": AutoConfig}

    def __init__(
        self,
        encoder_config: PretrainedConfig | dict[str, Any] | None = None,
        backbone_name: str | None = DEFAULT_BACKBONE,
        pooling: str = "mean",
        classifier_dropout: float = 0.1,
        initializer_range: float | None = None,
        **kwargs: Any,
    ) -> None:
        if pooling not in POOLING_MODES:
            raise ValueError(f"Unknown pooling {pooling!r}; expected one of: {', '.join(POOLING_MODES)}.")
        _default_to_sentence_types(kwargs)
        kwargs.setdefault("auto_map", dict(AUTO_MAP))
        self.encoder_config = build_encoder_config(encoder_config)
        self.backbone_name = backbone_name
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        self.initializer_range = (
            initializer_range
            if initializer_range is not None
            else getattr(self.encoder_config, "initializer_range", 0.02)
        )
        super().__init__(**kwargs)


KoSentTypeConfig.register_for_auto_class()
