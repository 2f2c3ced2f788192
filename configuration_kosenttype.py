"""Configuration of the Korean sentence-type classifier (사실형 / 추론형 / 예측형 / 대화형).

The encoder's whole configuration is nested in this one, so a saved model rebuilds offline,
without fetching the backbone it was trained from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from transformers import AutoConfig, PretrainedConfig

SENTENCE_TYPES = ("사실형", "추론형", "예측형", "대화형")
POOLING_MODES = ("mean", "cls")
# The other three axes of the AI Hub / DACON sentence-type taxonomy, each label list in its head's index order.
# `KoSentTypeConfig(attributes=ATTRIBUTE_LABELS)` asks for these heads.
ATTRIBUTE_LABELS: Mapping[str, tuple[str, ...]] = {
    "polarity": ("긍정", "부정", "미정"),
    "tense": ("과거", "현재", "미래"),
    "certainty": ("확실", "불확실"),
}
# Each axis's name in the AI Hub annotations and DACON's columns.
ATTRIBUTE_KOREAN_NAMES = {"polarity": "극성", "tense": "시제", "certainty": "확실성"}
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


def normalize_attributes(
    attributes: Mapping[str, Sequence[str]] | Iterable[tuple[str, Sequence[str]]],
) -> dict[str, list[str]]:
    """Check the attribute axes and return them as an ordered `{axis: [label, ...]}`.

    Accepts the mapping users write and the `[[axis, labels], ...]` pairs that config.json holds (JSON objects are
    written with sorted keys, which would lose the axes' order, and with it the order of `attribute_logits`).
    Axis names become module names in the state dict (`attribute_classifiers.<axis>.weight`), hence identifiers.
    """
    pairs = list(attributes.items() if isinstance(attributes, Mapping) else attributes)
    if not pairs:
        raise ValueError("attributes is empty; pass None for a model without attribute heads.")
    normalized: dict[str, list[str]] = {}
    for name, labels in pairs:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"Attribute name {name!r} must be an identifier (letters, digits, _), e.g. 'polarity'.")
        if name in normalized:
            raise ValueError(f"Attribute {name!r} is given twice.")
        if isinstance(labels, str) or not all(isinstance(label, str) and label for label in labels):
            raise ValueError(f"Attribute {name!r} needs a list of label names, got {labels!r}.")
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"Attribute {name!r} needs at least two distinct labels, got {list(labels)}.")
        normalized[name] = list(labels)
    return normalized


def normalize_loss_weights(weights: Mapping[str, float] | None, attributes: Mapping[str, Any]) -> dict[str, float]:
    """One finite, non-negative loss weight per axis, in the axes' order; an axis not named gets 1.0."""
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(attributes))
    if unknown:
        raise ValueError(
            f"attribute_loss_weights names {', '.join(unknown)}, which are not attributes ({', '.join(attributes)})."
        )
    normalized = {name: weights.get(name, 1.0) for name in attributes}
    for name, weight in normalized.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"attribute_loss_weights[{name!r}] must be a finite number >= 0, got {weight!r}.")
    return {name: float(weight) for name, weight in normalized.items()}


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
        attributes (`dict[str, list[str]]`, *optional*):
            Extra classification heads beside the sentence type, one per axis: axis name → label names in index
            order, e.g. [`ATTRIBUTE_LABELS`] (polarity 긍정/부정/미정, tense 과거/현재/미래, certainty 확실/불확실).
            Each head is one linear layer over the same pooled sentence vector as the type head. Without it (the
            default) the model, its weights, outputs and config.json are exactly those of the type-only classifier.
            config.json stores the axes as `[[name, labels], ...]` pairs, which keeps their order.
        attribute_loss_weights (`dict[str, float]`, *optional*):
            Each axis's weight in the joint training loss `CE_type + Σ weight_axis · CE_axis`; 1.0 for an axis
            not named. Only with `attributes`.

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
        attributes: Mapping[str, Sequence[str]] | Iterable[tuple[str, Sequence[str]]] | None = None,
        attribute_loss_weights: Mapping[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if pooling not in POOLING_MODES:
            raise ValueError(f"Unknown pooling {pooling!r}; expected one of: {', '.join(POOLING_MODES)}.")
        self.attributes = attributes
        self.attribute_loss_weights = attribute_loss_weights
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

    # Both attribute settings live in __dict__ only while the config has heads: a config without them then
    # serializes byte for byte as the type-only classifier's (transformers writes every other key, even a None).
    # Properties, so that values set later (`from_pretrained(..., attributes=...)` sets them) are checked too.
    @property
    def attributes(self) -> dict[str, list[str]] | None:
        """The attribute axes, `{axis: [label, ...]}` in head order, or None for a type-only classifier."""
        return self.__dict__.get("attributes")

    @attributes.setter
    def attributes(self, value: Mapping[str, Sequence[str]] | Iterable[tuple[str, Sequence[str]]] | None) -> None:
        previous_weights = self.__dict__.pop("attribute_loss_weights", None) or {}
        if value is None:
            self.__dict__.pop("attributes", None)
            return
        self.__dict__["attributes"] = normalize_attributes(value)
        self.attribute_loss_weights = {
            name: weight for name, weight in previous_weights.items() if name in self.__dict__["attributes"]
        }

    @property
    def attribute_loss_weights(self) -> dict[str, float] | None:
        """Each axis's weight in the joint loss, in head order; None without attribute heads."""
        return self.__dict__.get("attribute_loss_weights")

    @attribute_loss_weights.setter
    def attribute_loss_weights(self, value: Mapping[str, float] | None) -> None:
        if self.attributes is None:
            if value:
                raise ValueError("attribute_loss_weights needs attributes: this config has no attribute heads.")
            return
        self.__dict__["attribute_loss_weights"] = normalize_loss_weights(value, self.attributes)

    def to_dict(self) -> dict[str, Any]:
        """The config as transformers serializes it, with the attribute axes as ordered `[name, labels]` pairs."""
        output = super().to_dict()
        if "attributes" in output:
            output["attributes"] = [[name, list(labels)] for name, labels in output["attributes"].items()]
        return output


KoSentTypeConfig.register_for_auto_class()
