"""Korean sentence-type classifier: any `AutoModel` encoder → pooling over the attention mask → dropout → linear.

With `config.attributes`, more linear heads (polarity, tense, certainty, …) read the same dropped-out sentence vector;
`logits` stays the sentence type's, and `attribute_logits` holds one tensor per axis.

Loads with `AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)` and runs in
`pipeline("text-classification", ...)`; `AutoModel` gives the sentence-embedding model without the head.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import logging

from .configuration_kosenttype import KoSentTypeConfig

logger = logging.get_logger(__name__)


def mean_pooling(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token states that the attention mask keeps, so padding never changes a sentence's vector."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    summed = (token_embeddings * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def cls_pooling(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Take the first token's state, as BERT-style classifiers do."""
    return token_embeddings[:, 0]


POOLING_FUNCTIONS = {"mean": mean_pooling, "cls": cls_pooling}


@dataclass
class KoSentTypeSequenceClassifierOutput(SequenceClassifierOutput):
    r"""
    The classifier's output: [`SequenceClassifierOutput`] (`logits` = the sentence type's) plus the attribute heads'.

    attribute_logits (`tuple[torch.FloatTensor]`, *optional*):
        One `(batch_size, len(labels))` tensor per axis, in `config.attributes` order; `None` for a model without
        attribute heads, whose output then has exactly the keys and tuple form of a `SequenceClassifierOutput`.
    """

    attribute_logits: tuple[torch.FloatTensor, ...] | None = None


def cross_entropy_sums(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(Σ w_y · CE, Σ w_y)` over the rows whose label is known (-100 = unknown, skipped), in float32.

    The weighted mean's numerator and denominator are kept apart so that a trainer can add them up over every
    micro-batch and process of an optimizer step before dividing; `class_weights=None` weighs every class 1, so the
    denominator is the count of known labels.
    """
    weights = torch.ones(logits.shape[-1]) if class_weights is None else class_weights
    weights = weights.to(device=logits.device, dtype=torch.float32)
    weighted_losses = nn.functional.cross_entropy(
        logits.float(), labels, weight=weights, reduction="none", label_smoothing=label_smoothing
    )
    return weighted_losses.sum(), known_label_weight(labels, weights)


def known_label_weight(labels: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Σ w_y over the labels that are known (-100 = unknown); without class weights, their count."""
    known = labels != -100
    if class_weights is None:
        return known.sum().float()
    return torch.where(known, class_weights.to(labels.device)[labels.clamp(min=0)], 0.0).sum()


def attribute_losses(
    attribute_logits: tuple[torch.Tensor, ...],
    attribute_targets: torch.Tensor,
    class_weights: tuple[torch.Tensor | None, ...] | None = None,
) -> tuple[torch.Tensor, ...]:
    """Each axis's (class-weighted) mean cross-entropy over its known labels; 0 for an axis the batch never knows.

    `attribute_targets` is `(batch_size, n_axes)` in `config.attributes` order, -100 where a value is unknown.
    """
    class_weights = class_weights or (None,) * len(attribute_logits)
    losses = []
    for logits, labels, weights in zip(attribute_logits, attribute_targets.unbind(dim=-1), class_weights, strict=True):
        total, denominator = cross_entropy_sums(logits, labels, weights)
        # An axis with no known label has total 0: dividing by the smallest float keeps it (and its gradient) 0.
        losses.append(total / denominator.clamp(min=torch.finfo(denominator.dtype).tiny))
    return tuple(losses)


def _encoder_without_pooler(encoder_config: Any) -> dict[str, Any]:
    """Ask the encoder to skip its own pooler where it has one: the head never uses it, and unused
    parameters break DistributedDataParallel and bloat the checkpoint."""
    if type(encoder_config) not in MODEL_MAPPING:
        return {}
    parameters = inspect.signature(MODEL_MAPPING[type(encoder_config)].__init__).parameters
    return {"add_pooling_layer": False} if "add_pooling_layer" in parameters else {}


class KoSentTypePreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading glue shared by the embedding model and the classifier."""

    config_class = KoSentTypeConfig
    base_model_prefix = "kosenttype"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise the head only: the encoder is a `PreTrainedModel` of its own and initialises itself.

        torch's in-place init functions are used so that transformers can skip tensors it already loaded.
        """
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class KoSentTypeModel(KoSentTypePreTrainedModel):
    """The encoder and its pooling: `pooler_output` is the sentence embedding."""

    def __init__(self, config: KoSentTypeConfig) -> None:
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder_config, **_encoder_without_pooler(config.encoder_config))
        self.pool = POOLING_FUNCTIONS[config.pooling]
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPooling | tuple[torch.Tensor, ...]:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if attention_mask is None:
            reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        encoder_inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "inputs_embeds": inputs_embeds,
            "output_attentions": output_attentions,
            "output_hidden_states": output_hidden_states,
            "return_dict": True,
        }
        if token_type_ids is not None:
            encoder_inputs["token_type_ids"] = token_type_ids
        encoded = self.encoder(**encoder_inputs)
        sentence_embedding = self.pool(encoded.last_hidden_state, attention_mask)
        output = BaseModelOutputWithPooling(
            last_hidden_state=encoded.last_hidden_state,
            pooler_output=sentence_embedding,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )
        return output if return_dict else output.to_tuple()


def attribute_classifiers(config: KoSentTypeConfig) -> nn.ModuleDict:
    """One linear layer per attribute axis, named after it (state dict: `attribute_classifiers.<axis>.weight`)."""
    heads = nn.ModuleDict()
    for name, labels in config.attributes.items():
        if hasattr(heads, name):
            raise ValueError(f"Attribute name {name!r} is reserved by torch.nn.ModuleDict; name the axis otherwise.")
        heads[name] = nn.Linear(config.encoder_config.hidden_size, len(labels))
    return heads


class KoSentTypeForSequenceClassification(KoSentTypePreTrainedModel):
    """Sentence embedding → dropout → linear layer over the sentence types (and one per attribute axis, if any)."""

    def __init__(self, config: KoSentTypeConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.kosenttype = KoSentTypeModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.encoder_config.hidden_size, config.num_labels)
        if config.attributes:
            self.attribute_classifiers = attribute_classifiers(config)
        self.post_init()

    @classmethod
    def from_backbone(
        cls,
        backbone: str | os.PathLike,
        *,
        output_loading_info: bool = False,
        **config_overrides: Any,
    ) -> KoSentTypeForSequenceClassification | tuple[KoSentTypeForSequenceClassification, dict[str, list[str]]]:
        """A classifier with a pretrained encoder's weights and a new head: where training starts.

        `backbone` is a Hub id or a local folder of an encoder `AutoModel` can load; `config_overrides` go to
        [`KoSentTypeConfig`] (`pooling`, `classifier_dropout`, `id2label`, …).
        """
        if os.path.isdir(backbone) and not os.path.isfile(os.path.join(backbone, "config.json")):
            raise OSError(f"{backbone} has no config.json: it is not a saved encoder (expected an AutoModel folder).")
        encoder_config = AutoConfig.from_pretrained(backbone)
        config = KoSentTypeConfig(encoder_config=encoder_config, backbone_name=str(backbone), **config_overrides)
        model = cls(config)
        encoder, encoder_info = AutoModel.from_pretrained(
            backbone,
            config=config.encoder_config,
            output_loading_info=True,
            **_encoder_without_pooler(config.encoder_config),
        )
        model.kosenttype.encoder = encoder
        loading_info = {
            "missing_keys": [name for name, _ in model.named_parameters() if not name.startswith("kosenttype.")],
            "unexpected_keys": sorted(encoder_info.get("unexpected_keys", [])),
            "encoder_missing_keys": sorted(encoder_info.get("missing_keys", [])),
        }
        logger.warning(
            "Loaded the encoder of %s; newly initialised, to be trained: %s",
            backbone,
            ", ".join(loading_info["missing_keys"]),
        )
        return (model, loading_info) if output_loading_info else model

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        attribute_targets: torch.Tensor | None = None,
    ) -> KoSentTypeSequenceClassifierOutput | tuple[torch.Tensor, ...]:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Sentence-type ids in `[0, config.num_labels)`; when given, the cross-entropy loss is returned too.
        attribute_targets (`torch.LongTensor` of shape `(batch_size, len(config.attributes))`, *optional*):
            Label ids of every attribute axis, columns in `config.attributes` order, -100 where unknown (ignored).
            The loss is then the joint `CE_type + Σ config.attribute_loss_weights[axis] · CE_axis` (each CE a mean
            over the known labels; the type term only with `labels`).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        encoded = self.kosenttype(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        sentence_embedding = self.dropout(encoded.pooler_output)
        logits = self.classifier(sentence_embedding)
        attribute_logits = None
        if self.config.attributes:
            attribute_logits = tuple(head(sentence_embedding) for head in self.attribute_classifiers.values())
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels).float(), labels.view(-1))
        if attribute_targets is not None:
            attribute_loss = self._weighted_attribute_loss(attribute_logits, attribute_targets)
            loss = attribute_loss if loss is None else loss + attribute_loss
        output = KoSentTypeSequenceClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
            attribute_logits=attribute_logits,
        )
        return output if return_dict else output.to_tuple()

    def _weighted_attribute_loss(
        self, attribute_logits: tuple[torch.Tensor, ...] | None, attribute_targets: torch.Tensor
    ) -> torch.Tensor:
        """Σ weight_axis · CE_axis, after checking that the labels fit the heads."""
        if attribute_logits is None:
            raise ValueError("attribute_targets were given, but this model has no attribute heads (config.attributes).")
        expected_shape = (attribute_logits[0].shape[0], len(attribute_logits))
        if tuple(attribute_targets.shape) != expected_shape:
            raise ValueError(
                f"attribute_targets has shape {tuple(attribute_targets.shape)}; expected {expected_shape}: one column "
                f"per attribute in the order {', '.join(self.config.attributes)}."
            )
        weights = self.config.attribute_loss_weights
        losses = attribute_losses(attribute_logits, attribute_targets)
        return sum(weights[name] * loss for name, loss in zip(self.config.attributes, losses, strict=True))


KoSentTypeModel.register_for_auto_class("AutoModel")
KoSentTypeForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
