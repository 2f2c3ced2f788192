"""Korean sentence-type classifier: any `AutoModel` encoder → pooling over the attention mask → dropout → linear.

Loads with `AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)` and runs in
`pipeline("text-classification", ...)`; `AutoModel` gives the sentence-embedding model without the head.
"""

from __future__ import annotations

import inspect
import os
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


class KoSentTypeForSequenceClassification(KoSentTypePreTrainedModel):
    """Sentence embedding → dropout → linear layer over the sentence types."""

    def __init__(self, config: KoSentTypeConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.kosenttype = KoSentTypeModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.encoder_config.hidden_size, config.num_labels)
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
    ) -> SequenceClassifierOutput | tuple[torch.Tensor, ...]:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Sentence-type ids in `[0, config.num_labels)`; when given, the cross-entropy loss is returned too.
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
        logits = self.classifier(self.dropout(encoded.pooler_output))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels).float(), labels.view(-1))
        output = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=encoded.hidden_states, attentions=encoded.attentions
        )
        return output if return_dict else output.to_tuple()


KoSentTypeModel.register_for_auto_class("AutoModel")
KoSentTypeForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
