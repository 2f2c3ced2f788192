"""The `KoSentTypeConfig` a checkpoint was trained with: the encoder's real configuration where one can be had
(`--backbone`, or the backbone the run names), else what the tensor shapes show; pooling, dropout and the training
length from the run's settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, PretrainedConfig

from .configuration_kosenttype import KO_SROBERTA_ENCODER, KoSentTypeConfig
from .errors import KoSentTypeError, one_line
from .model_limits import position_limit
from .run_side_files import RunSettings

DEFAULT_MAX_LENGTH = 256
# Key names that side files use for the same facts, in order of preference.
BACKBONE_KEYS = ("backbone", "backbone_name", "base_model", "model_name", "model_name_or_path")
BACKBONE_KEYS += ("pretrained_model_name_or_path", "pretrained_model_name", "encoder_name")
MAX_LENGTH_KEYS = ("max_length", "max_len", "max_seq_length", "max_seq_len")
POOLING_KEYS = ("pooling", "pooling_mode", "pool", "pooling_strategy")
POOLING_ALIASES = {"mean_pooling": "mean", "avg": "mean", "average": "mean", "cls_token": "cls"}
DROPOUT_KEYS = ("classifier_dropout", "dropout", "dropout_rate", "head_dropout")
MODEL_TYPE_KEYS = ("model_type", "encoder_model_type")
# The encoder tensors whose shapes give its configuration when there is none to load.
WORDS, POSITIONS = "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight"
INTERMEDIATE = "encoder.layer.0.intermediate.dense.weight"


@dataclass
class Architecture:
    encoder_config: PretrainedConfig
    origin: str
    backbone_name: str | None


def named_backbone(settings: RunSettings) -> str | None:
    """The backbone the run's settings name, if any."""
    return settings.first(BACKBONE_KEYS, str)[0]


def resolve_architecture(backbone: str | None, encoder: dict[str, torch.Tensor], settings: RunSettings) -> Architecture:
    """The backbone's configuration (a kosenttype model lends its nested encoder's); inferred from the shapes when
    there is no backbone or a Hub id can't be reached. A backbone folder that doesn't load is an error."""
    if backbone is None:
        return _infer_architecture(encoder, settings, None, "no backbone given (--backbone) or named in the side files")
    try:
        config = AutoConfig.from_pretrained(backbone)
    except Exception as error:  # a Hub id may be out of reach (offline): shape inference covers it; a folder must load
        if Path(backbone).is_dir():
            raise KoSentTypeError(
                f"{backbone}: --backbone folder has no loadable config.json ({one_line(error)})"
            ) from None
        failure = f"the configuration of {backbone} could not be loaded ({one_line(error).split('. ')[0]})"
        return _infer_architecture(encoder, settings, backbone, failure)
    if config.model_type == KoSentTypeConfig.model_type:  # a kosenttype model (or its remote-code copy)
        origin = f"the encoder configuration inside {backbone} (a kosenttype model of {config.backbone_name})"
        return Architecture(config.encoder_config, origin, config.backbone_name)
    missing = [name for name in ("vocab_size", "hidden_size") if not hasattr(config, name)]
    if missing:
        raise KoSentTypeError(
            f"{backbone}: --backbone is a {config.model_type} configuration without {', '.join(missing)}, "
            "not a text encoder's; name the encoder the classifier was trained on"
        )
    return Architecture(config, f"configuration of {backbone}", backbone)


def _infer_architecture(
    encoder: dict[str, torch.Tensor], settings: RunSettings, backbone: str | None, failure: str
) -> Architecture:
    """Read what the tensors show; assume, and say so, what they can't (heads, layer-norm epsilon, activation)."""
    missing = sorted({WORDS, POSITIONS, INTERMEDIATE} - set(encoder))
    if missing:
        raise KoSentTypeError(
            f"cannot infer the encoder from its shapes (no {', '.join(missing)}): pass --backbone NAME_OR_DIR"
        )
    layers = {int(match.group(1)) for key in encoder if (match := re.match(r"encoder\.layer\.(\d+)\.", key))}
    vocab_size, hidden_size = encoder[WORDS].shape
    token_types = encoder.get("embeddings.token_type_embeddings.weight")
    shapes = {
        "vocab_size": int(vocab_size),
        "hidden_size": int(hidden_size),
        "num_hidden_layers": max(layers) + 1,
        "intermediate_size": int(encoder[INTERMEDIATE].shape[0]),
        "max_position_embeddings": int(encoder[POSITIONS].shape[0]),
        "type_vocab_size": int(token_types.shape[0]) if token_types is not None else 1,
    }
    model_type, type_reason = _infer_model_type(shapes["max_position_embeddings"], settings, backbone)
    hidden = shapes["hidden_size"]
    heads = max(1, hidden // 64)
    if hidden % heads:
        raise KoSentTypeError(f"hidden size {hidden} is not a multiple of 64: pass --backbone to name the encoder")
    defaults = KO_SROBERTA_ENCODER if model_type == "roberta" else {"layer_norm_eps": 1e-12, "pad_token_id": 0}
    assumed = {"num_attention_heads": heads, "hidden_act": "gelu"}
    assumed.update((key, defaults[key]) for key in ("layer_norm_eps", "pad_token_id"))
    config = AutoConfig.for_model(model_type, **shapes, **assumed)
    origin = (
        f"inferred from tensor shapes because {failure}: {model_type} ({type_reason}), "
        + ", ".join(f"{key} {value}" for key, value in shapes.items())
        + "; assumed (not visible in the weights): "
        + ", ".join(f"{key} {value}" for key, value in assumed.items())
        + " (pass --backbone NAME_OR_DIR to use the real configuration)"
    )
    return Architecture(config, origin, backbone)


def _infer_model_type(positions: int, settings: RunSettings, backbone: str | None) -> tuple[str, str]:
    """BERT and RoBERTa name their tensors alike; they differ in how positions are counted (RoBERTa offsets
    them past the padding id, hence 514 = 512 + 2)."""
    stated, where = settings.first(MODEL_TYPE_KEYS, str)
    if stated in ("bert", "roberta"):
        return stated, f"model_type stated in {where}"
    named = next((kind for kind in ("roberta", "bert") if kind in (backbone or "").lower()), None)
    if named:
        return named, f"backbone name {backbone}"
    if positions % 64 == 2:
        return "roberta", f"{positions} position embeddings = {positions - 2} + 2, RoBERTa's padding offset"
    if positions % 64 == 0:
        return "bert", f"{positions} position embeddings, a power-of-two count as in BERT"
    raise KoSentTypeError(
        f"cannot tell BERT from RoBERTa by {positions} position embeddings: pass --backbone NAME_OR_DIR"
    )


def build_config(architecture: Architecture, labels: list[str], settings: RunSettings) -> KoSentTypeConfig:
    """The classifier's configuration: the encoder, the run's pooling and dropout, and the labels in id order."""
    pooling = settings.first(POOLING_KEYS, str)[0] or "mean"
    dropout = settings.first(DROPOUT_KEYS, (int, float))[0]
    try:
        return KoSentTypeConfig(
            encoder_config=architecture.encoder_config,
            backbone_name=architecture.backbone_name,
            pooling=POOLING_ALIASES.get(pooling, pooling),
            classifier_dropout=float(dropout) if dropout is not None else 0.1,
            id2label=dict(enumerate(labels)),
        )
    except ValueError as error:  # e.g. a pooling this model does not implement
        raise KoSentTypeError(f"the run's side files ask for an unsupported head: {error}") from None


def usable_max_length(encoder_config: PretrainedConfig, settings: RunSettings) -> int:
    """The training max length; one the encoder's position embeddings can't take is refused here, at the start,
    rather than crashing the verification (or a user's first long sentence) with an IndexError."""
    limit = position_limit(encoder_config.to_dict())
    stated, where = settings.first(MAX_LENGTH_KEYS, int)
    if stated is None:
        return min(DEFAULT_MAX_LENGTH, limit or DEFAULT_MAX_LENGTH)
    if stated < 1 or (limit is not None and stated > limit):
        raise KoSentTypeError(
            f"{where}: max_length {stated} is not between 1 and the {limit} tokens the encoder's position "
            f"embeddings allow ({encoder_config.model_type}, max_position_embeddings "
            f"{encoder_config.max_position_embeddings}); correct the side file, or pass the right --backbone"
        )
    return stated
