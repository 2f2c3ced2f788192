"""Turn a training run's `best.pt` (encoder + mean pooling + dropout + linear head) into a Hub-ready model folder.

    kosenttype-convert --checkpoint RUN/best.pt --output-dir OUT [--push-to-hub OWNER/NAME]

The folder loads with `AutoModelForSequenceClassification.from_pretrained(OUT, trust_remote_code=True)` and in
`pipeline("text-classification", ...)`. The conversion never runs code from the checkpoint unless told to
(`--trust-checkpoint`), refuses any tensor it can't place or that is not sound (NaN/inf, repeated storage, a
vocabulary the tokenizer contradicts), and proves in a fresh process that the saved folder predicts what the
checkpoint predicts before anything appears at OUT. Reference: docs/converting.md.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer, HfArgumentParser, PretrainedConfig, PreTrainedTokenizerBase

from kosenttype import SENTENCE_TYPES, KoSentTypeConfig, KoSentTypeForSequenceClassification
from kosenttype.atomic_output import refuse_input_as_output, staged_folder
from kosenttype.configuration_kosenttype import KO_SROBERTA_ENCODER
from kosenttype.errors import KoSentTypeError, one_line, run_command
from kosenttype.hub_tokenizer import save_tokenizer_for_hub
from kosenttype.model_card import write_model_card
from kosenttype.model_limits import position_limit

PROGRAM = "kosenttype-convert"
DEFAULT_MAX_LENGTH = 256
MAX_ABS_LOGIT_DIFF = 1e-5
# Side files of a training run, looked for beside the checkpoint when not given explicitly.
DEFAULT_SIDE_FILES = {
    "tokenizer": "tokenizer",
    "label_mapping": "label_mapping.json",
    "metrics": "best_metrics.json",
    "export_config": "hf_export_config.json",
    "load_spec": "load_spec.json",
}
# Where training scripts put the weights inside a checkpoint dict, most specific first.
STATE_DICT_KEYS = ("model_state_dict", "state_dict", "model", "model_state", "net", "network", "weights", "module")
TOP_LEVEL = "the top level"
# Prefixes that wrappers add to every key: DataParallel/DDP and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Encoder tensors the classifier does not use: its pooler (the head pools itself) and index buffers that older
# transformers saved with the weights but that every version rebuilds.
UNUSED_ENCODER_TENSORS = re.compile(r"^pooler\.|^embeddings\.(position_ids|token_type_ids)$")
# Key names that side files use for the same facts, in order of preference.
BACKBONE_KEYS = (
    "backbone",
    "backbone_name",
    "base_model",
    "model_name",
    "model_name_or_path",
    "pretrained_model_name_or_path",
    "pretrained_model_name",
    "encoder_name",
)
MAX_LENGTH_KEYS = ("max_length", "max_len", "max_seq_length", "max_seq_len")
POOLING_KEYS = ("pooling", "pooling_mode", "pool", "pooling_strategy")
DROPOUT_KEYS = ("classifier_dropout", "dropout", "dropout_rate", "head_dropout")
LABEL_KEYS = ("id2label", "label2id", "labels", "label_names", "classes", "label_mapping")
TRAINING_SECTION_KEYS = ("training", "training_args", "hyperparameters", "hparams", "train")
# Embedding rows a tokenizer may leave unused: vocabularies are padded to a multiple of 8-128 for speed and some
# reserve tokens (T5 +28, DeBERTa-v3 +99, Qwen2 +271). Far more rows than that means the wrong tokenizer.
UNUSED_EMBEDDING_ROWS = 1024
UNUSED_EMBEDDING_FRACTION = 0.1
FINITE_CHECK_SLICE = 2**20
# Sentences written for this check: ordinary, empty, emoji, mixed scripts, and one past the length limit.
VERIFICATION_SENTENCES = [
    "시청 앞 광장에서 어제 저녁 불꽃 축제가 열렸다.",
    "판매 부진이 이어진 것은 가격 정책 탓으로 보인다.",
    "다음 분기에는 신규 공장이 가동될 예정이다.",
    "점심 같이 드실래요?",
    "",
    "드디어 합격했어요 🎉🎉",
    "새 GPU 서버는 CUDA 12 환경에서 benchmark를 통과했다.",
    " ".join(["연구진은 이번 실험 결과가 기존 이론과 다르다고 설명했다."] * 60),
]


def option(help: str, default: Any = MISSING, **metadata: Any) -> Any:
    """A dataclass field as HfArgumentParser reads it: a default (none: required) and its --help text."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class ConversionArguments:
    checkpoint: str = option("The training run's checkpoint (torch.save), e.g. RUN/best.pt.")
    output_dir: str = option("The model folder to create; must not exist unless --overwrite.")
    tokenizer: str | None = option("Tokenizer folder; RUN/tokenizer when not given.", None)
    label_mapping: str | None = option("Label mapping JSON; RUN/label_mapping.json when not given.", None)
    metrics: str | None = option("Metrics JSON for the model card; RUN/best_metrics.json when not given.", None)
    export_config: str | None = option(
        "Backbone, max length, pooling, hyper-parameters; RUN/hf_export_config.json when not given.", None
    )
    backbone: str | None = option(
        "Hub id or folder whose configuration (not weights) defines the encoder's architecture "
        "(a kosenttype model folder lends its encoder's).",
        None,
    )
    push_to_hub: str | None = option("Publish OUT to this Hub repository (created if needed).", None, metavar="REPO_ID")
    private: bool = option("Create the Hub repository as private.", False)
    commit_message: str = option(
        "Commit message of the upload.", "Upload KoSentType classifier converted from a training checkpoint"
    )
    overwrite: bool = option("Replace an existing OUT (only once all else worked).", False)
    trust_checkpoint: bool = option(
        "Unpickle arbitrary objects from the checkpoint: only for files you trust, as it runs code.", False
    )
    license: str = option("License in the model card's metadata.", "apache-2.0")
    verbose: bool = option("List every tensor's source and target key.", False)


@dataclass
class RunFiles:
    """The inputs, with the optional side files resolved to paths that exist (or None)."""

    checkpoint: Path
    tokenizer: Path | None
    label_mapping: Path | None
    metrics: Path | None
    export_config: Path | None
    load_spec: Path | None

    def inputs(self) -> list[Path]:
        return [path for path in vars(self).values() if path is not None]


@dataclass
class Checkpoint:
    """What a checkpoint file holds: the weights, and the plain data a training script kept beside them."""

    state_dict: dict[str, torch.Tensor]
    location: str
    extras: dict[str, Any]


@dataclass
class SourceLayout:
    """How the training module named its tensors: where the encoder sits and which tensors are the head."""

    encoder_prefix: str
    encoder: dict[str, torch.Tensor]
    head_prefix: str
    head_weight: torch.Tensor
    head_bias: torch.Tensor


@dataclass
class Architecture:
    encoder_config: PretrainedConfig
    origin: str
    backbone_name: str | None


@dataclass
class MappedWeights:
    state_dict: dict[str, torch.Tensor]
    pairs: list[tuple[str, str]]
    dropped: list[str]


@dataclass
class Conversion:
    """The converted model in memory, with everything the output folder will hold beside its weights."""

    model: KoSentTypeForSequenceClassification
    tokenizer: PreTrainedTokenizerBase
    labels: list[str]
    max_length: int
    metrics: dict
    training_procedure: dict


# Settings found in the run's side files, each with where it was found: [(source, mapping), ...], most trusted first.
Hints = list[tuple[str, Mapping | None]]


# ---------------------------------------------------------------------------------------------------------------
# Inputs


def resolve_run_files(args: ConversionArguments) -> RunFiles:
    """Explicitly named files must exist; default-named ones beside the checkpoint are used when present."""
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise KoSentTypeError(f"{checkpoint}: checkpoint not found")
    resolved = {}
    for name, default_name in DEFAULT_SIDE_FILES.items():
        given = getattr(args, name, None)  # load_spec has no option: only ever the default name
        if given is not None and not Path(given).exists():
            raise KoSentTypeError(f"{given}: --{name.replace('_', '-')} not found")
        default = checkpoint.parent / default_name
        resolved[name] = Path(given) if given is not None else default if default.exists() else None
    return RunFiles(checkpoint=checkpoint, **resolved)


def read_json(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise KoSentTypeError(f"{path}: not readable JSON ({one_line(error)})") from None


def check_output_dir(output_dir: Path, files: RunFiles, overwrite: bool) -> None:
    """Refuse before any work: OUT must never be or hold an input, and an existing OUT needs --overwrite."""
    refuse_input_as_output(output_dir, files.inputs(), "--output-dir")
    if (output_dir.exists() or output_dir.is_symlink()) and not overwrite:
        raise KoSentTypeError(f"{output_dir}: already exists (pass --overwrite to replace it)")


# ---------------------------------------------------------------------------------------------------------------
# Reading the checkpoint without running code


def _renamed_globals(objects: list[Any], pickled_names: dict[Any, list[str]]) -> list[Any]:
    """Allow-list entries, plus the names under which other numpy/python versions pickle the same objects."""
    entries: list[Any] = list(objects)
    for obj, names in pickled_names.items():
        entries.extend((obj, name) for name in names if name != f"{obj.__module__}.{obj.__qualname__}")
    return entries


def safe_checkpoint_globals() -> list[Any]:
    """Plain data types that training scripts save beside the weights; none of them can run code when unpickled."""
    import argparse
    import datetime
    import pathlib

    import numpy

    multiarray = numpy._core.multiarray if hasattr(numpy, "_core") else numpy.core.multiarray
    dtype_classes = [type(numpy.dtype(code)) for code in "?bBhHiIlLqQefdgFD"] + [type(numpy.dtype("U1"))]
    paths = [pathlib.PosixPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]
    pickled_names = {
        multiarray.scalar: ["numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"],
        multiarray._reconstruct: ["numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"],
        **{path: [f"pathlib.{path.__name__}"] for path in paths},
    }
    plain = [argparse.Namespace, datetime.datetime, datetime.date, datetime.timedelta, numpy.dtype, numpy.ndarray]
    return _renamed_globals(plain + dtype_classes + [multiarray.scalar, multiarray._reconstruct] + paths, pickled_names)


def load_checkpoint_object(path: Path, trust: bool) -> Any:
    """`torch.load` with only tensors and plain data allowed, memory-mapped so the weights are read, not copied."""
    is_zip = zipfile.is_zipfile(path)
    _refuse_unreadable(path, is_zip)
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False, mmap=is_zip)
        with torch.serialization.safe_globals(safe_checkpoint_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as error:
        raise _explain_load_failure(path, error, is_zip, trust) from None


def _refuse_unreadable(path: Path, is_zip: bool) -> None:
    with path.open("rb") as stream:
        head = stream.read(4)
    if not head:
        raise KoSentTypeError(f"{path}: empty file, not a PyTorch checkpoint")
    if head.startswith(b"PK") and not is_zip:
        raise KoSentTypeError(f"{path}: truncated or corrupt PyTorch checkpoint (its zip archive is incomplete)")


def _explain_load_failure(path: Path, error: Exception, is_zip: bool, trust: bool) -> KoSentTypeError:
    message = one_line(error, limit=2000)
    weights_only_failure = "Weights only load failed" in message
    refused = _unsafe_globals(path, message, is_zip) if weights_only_failure else []
    if refused:
        return KoSentTypeError(
            f"{path}: refused to unpickle {', '.join(refused)} (not plain data: loading it may run code); "
            "if you trust this file, rerun with --trust-checkpoint"
        )
    if is_zip and ("PytorchStreamReader" in message or "zip archive" in message or isinstance(error, EOFError)):
        return KoSentTypeError(f"{path}: truncated or corrupt PyTorch checkpoint ({message[:200]})")
    if trust and isinstance(error, (AttributeError, ModuleNotFoundError)):
        return KoSentTypeError(f"{path}: its pickled objects need code that is not importable here ({message[:200]})")
    if weights_only_failure:  # torch's advice on weights_only is noise here: keep the unpickler's own reason
        message = message.split("WeightsUnpickler error:")[-1].split("Check the documentation")[0].strip()
    return KoSentTypeError(f"{path}: not a PyTorch checkpoint ({type(error).__name__}: {message[:200]})")


def _unsafe_globals(path: Path, message: str, is_zip: bool) -> list[str]:
    """Every object the safe load refuses, read from the pickle's opcodes without executing them (zip format), or
    the one torch's message names ('Unsupported global: GLOBAL x.y' or, for a blocked module, 'unsupported GLOBAL
    x.y whose module x is blocked'; the legacy format can't be scanned)."""
    named = list(dict.fromkeys(re.findall(r"GLOBAL ([\w.]+) (?:was|whose)", message)))
    if is_zip:
        allowed = {
            entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}"
            for entry in safe_checkpoint_globals()
        }
        with contextlib.suppress(Exception):  # if the scan fails, the error message's own entry still says enough
            named = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - allowed) or named
    return named


def read_checkpoint(path: Path, trust: bool) -> Checkpoint:
    loaded = load_checkpoint_object(path, trust)
    if isinstance(loaded, torch.nn.Module):
        return Checkpoint(state_dict=dict(loaded.state_dict()), location="a pickled nn.Module", extras={})
    if not isinstance(loaded, Mapping):
        raise KoSentTypeError(f"{path}: holds a {type(loaded).__name__}, not a state dict or a dict holding one")
    state_dict, location = _find_state_dict(loaded, path)
    extras = {key: value for key, value in loaded.items() if key != location} if location != TOP_LEVEL else {}
    return Checkpoint(state_dict=_strip_wrapper_prefixes(state_dict), location=location, extras=extras)


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(t, torch.Tensor) for t in value.values())


def _find_state_dict(loaded: Mapping, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    if _is_state_dict(loaded):
        return dict(loaded), TOP_LEVEL
    for key in STATE_DICT_KEYS:
        value = loaded.get(key)
        if isinstance(value, torch.nn.Module):
            return dict(value.state_dict()), key
        if _is_state_dict(value):
            return dict(value), key
    candidates = [key for key, value in loaded.items() if _is_state_dict(value) and _word_embedding_keys(value)]
    if len(candidates) == 1:
        return dict(loaded[candidates[0]]), candidates[0]
    raise KoSentTypeError(
        f"{path}: no model weights found (looked for a tensor dict under {', '.join(STATE_DICT_KEYS)}; "
        f"top-level keys: {', '.join(map(str, loaded))})"
    )


def _strip_wrapper_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`module._orig_mod.encoder…` → `encoder…`: what DataParallel/DDP and torch.compile put before every key."""
    while state_dict:
        prefix = next((p for p in WRAPPER_PREFIXES if all(key.startswith(p) for key in state_dict)), None)
        if prefix is None:
            break
        state_dict = {key.removeprefix(prefix): tensor for key, tensor in state_dict.items()}
    return state_dict


def check_tensors_are_sound(state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse what would convert into a broken or bloated model, before any memory is spent on it.

    A tensor saved as a view that repeats its storage (stride 0, `expand`) is small in the checkpoint but written
    out in full by safetensors (224 KB became 960 MB); a NaN or inf anywhere passes the verification sentences
    when they never reach it (one embedding row) and then poisons every prediction that does.
    """
    for key, tensor in state_dict.items():
        logical_bytes = tensor.numel() * tensor.element_size()
        repeated = any(stride == 0 and size > 1 for size, stride in zip(tensor.shape, tensor.stride(), strict=True))
        if repeated or tensor.untyped_storage().nbytes() < logical_bytes:
            raise KoSentTypeError(
                f"{path}: tensor {key} {list(tensor.shape)} repeats its storage (strides {list(tensor.stride())}, "
                f"{tensor.untyped_storage().nbytes()} bytes stored for {logical_bytes}): not a trained weight; "
                "save the real tensor (e.g. .contiguous()) in the checkpoint"
            )
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() and not _all_finite(tensor):
            bad = ~torch.isfinite(tensor)
            first = [int(index) for index in bad.nonzero()[0]]
            raise KoSentTypeError(
                f"{path}: tensor {key} {list(tensor.shape)} holds {int(bad.sum())} NaN/inf value(s), the first at "
                f"{first} ({tensor[tuple(first)].item()}); the training run diverged or the file is damaged"
            )


def _all_finite(tensor: torch.Tensor) -> bool:
    """In slices of a million values, so the check's temporary stays small beside the mapped weights."""
    return all(bool(torch.isfinite(piece).all()) for piece in tensor.reshape(-1).split(FINITE_CHECK_SLICE))


# ---------------------------------------------------------------------------------------------------------------
# Finding the encoder and the head by structure


def _word_embedding_keys(state_dict: Mapping[str, Any]) -> list[str]:
    return [key for key in state_dict if key.endswith("embeddings.word_embeddings.weight")]


def find_source_layout(state_dict: dict[str, torch.Tensor], checkpoint: Path) -> SourceLayout:
    """The encoder is whatever sits under the prefix of its word embeddings; the head is the one [labels, hidden]
    weight with its bias outside it. Anything else outside the encoder means another architecture."""
    embedding_keys = _word_embedding_keys(state_dict)
    if len(embedding_keys) != 1:
        found = ", ".join(embedding_keys) or "none"
        raise KoSentTypeError(f"{checkpoint}: expected one encoder '*embeddings.word_embeddings.weight', found {found}")
    encoder_prefix = embedding_keys[0].removesuffix("embeddings.word_embeddings.weight")
    hidden = state_dict[embedding_keys[0]].shape[1]
    encoder = {k.removeprefix(encoder_prefix): t for k, t in state_dict.items() if _in_encoder(k, encoder_prefix)}
    outside = {key: tensor for key, tensor in state_dict.items() if not _in_encoder(key, encoder_prefix)}
    heads = [
        key.removesuffix("weight")
        for key, tensor in outside.items()
        if key.endswith(".weight")
        and tensor.ndim == 2
        and tensor.shape[1] == hidden
        and _is_bias_of(outside.get(key.removesuffix("weight") + "bias"), tensor)
    ]
    if len(heads) != 1 or len(outside) != 2:
        raise KoSentTypeError(
            f"{checkpoint}: expected exactly one linear head [num_labels, {hidden}] + bias beside the encoder "
            f"'{encoder_prefix}*', found: {_describe(outside) or 'nothing'}"
        )
    head_prefix = heads[0]
    return SourceLayout(
        encoder_prefix=encoder_prefix,
        encoder=encoder,
        head_prefix=head_prefix,
        head_weight=outside[head_prefix + "weight"],
        head_bias=outside[head_prefix + "bias"],
    )


def _in_encoder(key: str, encoder_prefix: str) -> bool:
    """Under the encoder's prefix; a module that subclassed the encoder has none, and then its top-level modules
    (BERT's family: embeddings, encoder, pooler) tell the encoder from the head."""
    if encoder_prefix:
        return key.startswith(encoder_prefix)
    return key.split(".", 1)[0] in ("embeddings", "encoder", "pooler")


def _is_bias_of(bias: torch.Tensor | None, weight: torch.Tensor) -> bool:
    return bias is not None and bias.ndim == 1 and bias.shape[0] == weight.shape[0]


def _describe(tensors: Mapping[str, torch.Tensor], limit: int = 12) -> str:
    items = [f"{key} {list(tensor.shape)}" for key, tensor in tensors.items()]
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


# ---------------------------------------------------------------------------------------------------------------
# Architecture: a real configuration where one can be had, else what the shapes show


def first_value(hints: Hints, keys: tuple[str, ...], kind: type | tuple[type, ...]) -> tuple[Any, str]:
    """The first value of the right type under any of `keys`, searching the sources in order of trust, and where
    it was found (`FILE ['key']`), or (None, "")."""
    for source, values in hints:
        for key in keys:
            value = (values or {}).get(key)
            if isinstance(value, kind) and not isinstance(value, bool):
                return value, f"{source} ['{key}']"
    return None, ""


def resolve_architecture(backbone: str | None, encoder: dict[str, torch.Tensor], hints: Hints) -> Architecture:
    if backbone is None:
        return _infer_architecture(encoder, hints, None, "no backbone given (--backbone) or named in the side files")
    try:
        config = AutoConfig.from_pretrained(backbone)
    except Exception as error:  # a Hub id may be out of reach (offline): shape inference covers it; a folder must load
        if Path(backbone).is_dir():
            raise KoSentTypeError(
                f"{backbone}: --backbone folder has no loadable config.json ({one_line(error)})"
            ) from None
        failure = f"the configuration of {backbone} could not be loaded ({one_line(error).split('. ')[0]})"
        return _infer_architecture(encoder, hints, backbone, failure)
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
    encoder: dict[str, torch.Tensor], hints: Hints, backbone: str | None, failure: str
) -> Architecture:
    """Read what the tensors show; assume, and say so, what they can't (heads, layer-norm epsilon, activation)."""
    shapes = _encoder_shapes(encoder)
    model_type, type_reason = _infer_model_type(shapes["max_position_embeddings"], hints, backbone)
    hidden = shapes["hidden_size"]
    heads = max(1, hidden // 64)
    if hidden % heads:
        raise KoSentTypeError(f"hidden size {hidden} is not a multiple of 64: pass --backbone to name the encoder")
    defaults = KO_SROBERTA_ENCODER if model_type == "roberta" else {"layer_norm_eps": 1e-12, "pad_token_id": 0}
    assumed = {
        "num_attention_heads": heads,
        "hidden_act": "gelu",
        "layer_norm_eps": defaults["layer_norm_eps"],
        "pad_token_id": defaults["pad_token_id"],
    }
    config = AutoConfig.for_model(model_type, **shapes, **assumed)
    origin = (
        f"inferred from tensor shapes because {failure}: {model_type} ({type_reason}), "
        + ", ".join(f"{key} {value}" for key, value in shapes.items())
        + "; assumed (not visible in the weights): "
        + ", ".join(f"{key} {value}" for key, value in assumed.items())
        + " (pass --backbone NAME_OR_DIR to use the real configuration)"
    )
    return Architecture(config, origin, backbone)


def _encoder_shapes(encoder: dict[str, torch.Tensor]) -> dict[str, int]:
    required = {
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "encoder.layer.0.intermediate.dense.weight",
    }
    missing = sorted(required - set(encoder))
    if missing:
        raise KoSentTypeError(
            f"cannot infer the encoder from its shapes (no {', '.join(missing)}): pass --backbone NAME_OR_DIR"
        )
    layers = {int(match.group(1)) for key in encoder if (match := re.match(r"encoder\.layer\.(\d+)\.", key))}
    vocab_size, hidden_size = encoder["embeddings.word_embeddings.weight"].shape
    token_types = encoder.get("embeddings.token_type_embeddings.weight")
    return {
        "vocab_size": int(vocab_size),
        "hidden_size": int(hidden_size),
        "num_hidden_layers": max(layers) + 1,
        "intermediate_size": int(encoder["encoder.layer.0.intermediate.dense.weight"].shape[0]),
        "max_position_embeddings": int(encoder["embeddings.position_embeddings.weight"].shape[0]),
        "type_vocab_size": int(token_types.shape[0]) if token_types is not None else 1,
    }


def _infer_model_type(positions: int, hints: Hints, backbone: str | None) -> tuple[str, str]:
    """BERT and RoBERTa name their tensors alike; they differ in how positions are counted (RoBERTa offsets
    them past the padding id, hence 514 = 512 + 2)."""
    stated, where = first_value(hints, ("model_type", "encoder_model_type"), str)
    if stated in ("bert", "roberta"):
        return stated, f"model_type stated in {where}"
    name = (backbone or "").lower()
    if "roberta" in name:
        return "roberta", f"backbone name {backbone}"
    if "bert" in name:
        return "bert", f"backbone name {backbone}"
    if positions % 64 == 2:
        return "roberta", f"{positions} position embeddings = {positions - 2} + 2, RoBERTa's padding offset"
    if positions % 64 == 0:
        return "bert", f"{positions} position embeddings, a power-of-two count as in BERT"
    raise KoSentTypeError(
        f"cannot tell BERT from RoBERTa by {positions} position embeddings: pass --backbone NAME_OR_DIR"
    )


def usable_max_length(encoder_config: PretrainedConfig, hints: Hints) -> int:
    """The training max length; one the encoder's position embeddings can't take is refused here, at the start,
    rather than crashing the verification (or a user's first long sentence) with an IndexError."""
    limit = position_limit(encoder_config.to_dict())
    stated, where = first_value(hints, MAX_LENGTH_KEYS, int)
    if stated is None:
        return min(DEFAULT_MAX_LENGTH, limit or DEFAULT_MAX_LENGTH)
    if stated < 1 or (limit is not None and stated > limit):
        raise KoSentTypeError(
            f"{where}: max_length {stated} is not between 1 and the {limit} tokens the encoder's position "
            f"embeddings allow ({encoder_config.model_type}, max_position_embeddings "
            f"{encoder_config.max_position_embeddings}); correct the side file, or pass the right --backbone"
        )
    return stated


# ---------------------------------------------------------------------------------------------------------------
# Labels


def labels_from(value: Any, source: str) -> list[str] | None:
    """Label names in id order from any of the usual shapes: {label2id, id2label}, a flat name→id or id→name
    dict, or a list."""
    if value is None:
        return None
    if isinstance(value, Mapping) and ("label2id" in value or "id2label" in value):
        orders = [
            labels_from(value[key], f"{source} {key}") for key in ("id2label", "label2id") if value.get(key) is not None
        ]
        if len(orders) == 2 and orders[0] != orders[1]:
            raise KoSentTypeError(f"{source}: id2label {orders[0]} and label2id {orders[1]} disagree")
        return orders[0]
    if isinstance(value, (list, tuple)) and all(isinstance(name, str) for name in value):
        return _checked_order(dict(enumerate(value)), source)
    if isinstance(value, Mapping) and value and all(_is_int_like(index) for index in value.values()):
        return _checked_order({int(index): str(name) for name, index in value.items()}, source)
    if isinstance(value, Mapping) and value and all(_is_int_like(index) for index in value):
        return _checked_order({int(index): str(name) for index, name in value.items()}, source)
    raise KoSentTypeError(f"{source}: unrecognised label mapping (expected label2id/id2label, a dict or a list)")


def _is_int_like(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.isdigit())


def _checked_order(by_index: dict[int, str], source: str) -> list[str]:
    if sorted(by_index) != list(range(len(by_index))) or len(set(by_index.values())) != len(by_index):
        raise KoSentTypeError(f"{source}: label ids must be 0..{len(by_index) - 1} with unique names, got {by_index}")
    return [by_index[index] for index in range(len(by_index))]


def resolve_labels(files: RunFiles, label_mapping: Any, checkpoint: Checkpoint, num_outputs: int) -> tuple[list, str]:
    """Every source of labels must agree with the others and with the head's size; the seed's order otherwise."""
    sources = []
    if label_mapping is not None:
        sources.append((str(files.label_mapping), labels_from(label_mapping, str(files.label_mapping))))
    for key in LABEL_KEYS:
        if isinstance(checkpoint.extras.get(key), (Mapping, list, tuple)):  # not e.g. 'classes': 4
            where = f"{files.checkpoint} ['{key}']"
            sources.append((where, labels_from(checkpoint.extras[key], where)))
            break
    for (first_source, first), (other_source, other) in itertools.pairwise(sources):
        if first != other:
            raise KoSentTypeError(f"labels disagree: {first_source} has {first}, {other_source} has {other}")
    labels, origin = (sources[0][1], " and ".join(s for s, _ in sources)) if sources else (list(SENTENCE_TYPES), "")
    if len(labels) != num_outputs:
        raise KoSentTypeError(
            f"{origin or 'the default'} has {len(labels)} labels {labels}, but the checkpoint's head has {num_outputs}"
        )
    return labels, origin or "the seed's fixed order: no label mapping found"


# ---------------------------------------------------------------------------------------------------------------
# Metrics and training procedure for the model card


def normalize_metrics(raw: Any, labels: list[str]) -> dict:
    """Accept the usual shapes (flat scores, possibly prefixed eval_/val_/best_, and sklearn's
    classification_report dict, top-level or nested) and return the model card's metrics dict."""
    if not isinstance(raw, Mapping):
        return {}
    flat = {_metric_key(key): value for key, value in raw.items()}
    nested = [value for key, value in flat.items() if key in ("report", "classification_report")]
    report = next((value for value in nested if isinstance(value, Mapping)), raw)
    metrics: dict[str, Any] = {}
    averages = {"accuracy": report.get("accuracy"), **_report_averages(report)}
    for name, aliases in {
        "accuracy": ("accuracy", "acc"),
        "macro_f1": ("macro_f1", "f1_macro", "macro_avg_f1"),
        "weighted_f1": ("weighted_f1", "f1_weighted", "weighted_avg_f1"),
    }.items():
        value = next((flat[a] for a in aliases if isinstance(flat.get(a), (int, float))), averages.get(name))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[name] = float(value)
    per_label = _per_label_scores(report, labels) or _per_label_scores(flat.get("per_label") or {}, labels)
    if per_label:
        metrics["per_label"] = per_label
    dataset, _ = first_value([("metrics", raw)], ("eval_dataset", "dataset", "split"), str)
    if dataset:
        metrics["eval_dataset"] = dataset
    return metrics


def _metric_key(key: Any) -> str:
    key = re.sub(r"[\s\-]+", "_", str(key).lower())
    return re.sub(r"^(eval|val|valid|validation|test|best|holdout)_", "", key)


def _report_averages(report: Mapping) -> dict[str, Any]:
    def f1(entry: Any) -> Any:
        return entry.get("f1-score", entry.get("f1")) if isinstance(entry, Mapping) else None

    return {"macro_f1": f1(report.get("macro avg")), "weighted_f1": f1(report.get("weighted avg"))}


def _per_label_scores(report: Mapping, labels: list[str]) -> dict[str, dict]:
    per_label = {}
    for index, label in enumerate(labels):
        entry = report.get(label, report.get(str(index)))
        if isinstance(entry, Mapping):
            scores = {
                "precision": entry.get("precision"),
                "recall": entry.get("recall"),
                "f1": entry.get("f1-score", entry.get("f1")),
                "support": entry.get("support"),
            }
            per_label[label] = {key: value for key, value in scores.items() if value is not None}
    return per_label


def training_procedure_from(export_config: Any) -> dict[str, Any]:
    """The hyper-parameters worth publishing: scalar settings, not labels or this machine's paths."""
    if not isinstance(export_config, Mapping):
        return {}
    sections = [export_config] + [export_config[key] for key in TRAINING_SECTION_KEYS if key in export_config]
    settings = [item for section in sections if isinstance(section, Mapping) for item in section.items()]
    return {key: value for key, value in settings if _is_publishable_setting(key, value)}


def _is_publishable_setting(key: str, value: Any) -> bool:
    if key in LABEL_KEYS or not isinstance(value, (str, int, float, bool)):
        return False
    return not (isinstance(value, str) and (os.path.isabs(value) or value.startswith(("~", "./", "../"))))


# ---------------------------------------------------------------------------------------------------------------
# Building, mapping and checking the weights


def build_config(architecture: Architecture, labels: list[str], hints: Hints) -> KoSentTypeConfig:
    pooling = first_value(hints, POOLING_KEYS, str)[0] or "mean"
    pooling = {"mean_pooling": "mean", "avg": "mean", "average": "mean", "cls_token": "cls"}.get(pooling, pooling)
    dropout = first_value(hints, DROPOUT_KEYS, (int, float))[0]
    try:
        return KoSentTypeConfig(
            encoder_config=architecture.encoder_config,
            backbone_name=architecture.backbone_name,
            pooling=pooling,
            classifier_dropout=float(dropout) if dropout is not None else 0.1,
            id2label=dict(enumerate(labels)),
        )
    except ValueError as error:  # e.g. a pooling this model does not implement
        raise KoSentTypeError(f"the run's side files ask for an unsupported head: {error}") from None


def empty_model(config: KoSentTypeConfig) -> KoSentTypeForSequenceClassification:
    """The target model with parameters on the meta device (no memory, no random init) and real buffers, so the
    checkpoint's memory-mapped tensors can be assigned in place instead of copied."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return KoSentTypeForSequenceClassification(config)


def map_weights(layout: SourceLayout, model: torch.nn.Module) -> MappedWeights:
    """Source encoder keys onto the target encoder's, the head onto `classifier`; fail on anything left over."""
    target = model.state_dict()
    target_encoder = {key.removeprefix("kosenttype.encoder."): key for key in target if key.startswith("kosenttype.")}
    mapped, pairs, dropped, unexpected = {}, [], [], {}
    for key, tensor in layout.encoder.items():
        if key in target_encoder:
            mapped[target_encoder[key]] = tensor
            pairs.append((layout.encoder_prefix + key, target_encoder[key]))
        elif UNUSED_ENCODER_TENSORS.search(key):
            dropped.append(f"{layout.encoder_prefix}{key} {list(tensor.shape)}")
        else:
            unexpected[layout.encoder_prefix + key] = tensor
    for suffix, tensor in (("weight", layout.head_weight), ("bias", layout.head_bias)):
        mapped[f"classifier.{suffix}"] = tensor
        pairs.append((layout.head_prefix + suffix, f"classifier.{suffix}"))
    _check_complete(mapped, target, unexpected)
    return MappedWeights(state_dict=mapped, pairs=pairs, dropped=dropped)


def _check_complete(mapped: dict, target: dict, unexpected: dict) -> None:
    missing = {key: tensor for key, tensor in target.items() if key not in mapped}
    mismatched = [
        f"{key} checkpoint {list(tensor.shape)} vs model {list(target[key].shape)}"
        for key, tensor in mapped.items()
        if tuple(tensor.shape) != tuple(target[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected in the checkpoint: {_describe(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {', '.join(mismatched[:12])}")
    if problems:
        raise KoSentTypeError("the checkpoint does not fit the architecture; " + "; ".join(problems))


def load_weights(model: torch.nn.Module, weights: MappedWeights) -> list[str]:
    """Assign the tensors (no copy for float32); other float types become float32 so 4.57 and 5.x load alike."""
    casts = sorted(
        {str(t.dtype) for t in weights.state_dict.values() if t.is_floating_point() and t.dtype != torch.float32}
    )
    state_dict = {key: t.float() if t.is_floating_point() else t for key, t in weights.state_dict.items()}
    model.load_state_dict(state_dict, strict=True, assign=True)
    return casts


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer


def load_tokenizer(files: RunFiles, backbone: str | None) -> tuple[PreTrainedTokenizerBase, str]:
    source = str(files.tokenizer) if files.tokenizer is not None else backbone
    if source is None:
        raise KoSentTypeError(f"no tokenizer: no {files.checkpoint.parent / 'tokenizer'}; pass --tokenizer DIR")
    try:
        return AutoTokenizer.from_pretrained(source), source
    except Exception as error:
        hint = "" if files.tokenizer is not None else " (pass --tokenizer DIR)"
        raise KoSentTypeError(f"{source}: tokenizer could not be loaded{hint}: {one_line(error, 200)}") from None


def check_tokenizer_fits(tokenizer: PreTrainedTokenizerBase, source: str, embedding_rows: int) -> None:
    """Every token must have an embedding row, and (nearly) every row a token: an embedding far larger than the
    vocabulary (5,000,000 rows for 519 tokens) means the wrong tokenizer or a damaged checkpoint."""
    tokens = len(tokenizer)
    if tokens > embedding_rows:
        raise KoSentTypeError(f"{source}: tokenizer has {tokens} tokens, the encoder embeds only {embedding_rows}")
    if embedding_rows - tokens > max(UNUSED_EMBEDDING_ROWS, UNUSED_EMBEDDING_FRACTION * tokens):
        raise KoSentTypeError(
            f"{source}: tokenizer has {tokens} tokens, but the checkpoint's word embeddings have {embedding_rows} "
            "rows: pass the tokenizer the run trained with (--tokenizer DIR), or check the checkpoint"
        )


# ---------------------------------------------------------------------------------------------------------------
# Verification in a fresh process

VERIFY_SCRIPT = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder = sys.argv[1]
sentences = json.loads(sys.stdin.read())
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**batch).logits
print(json.dumps({"logits": logits.tolist(), "model_class": f"{type(model).__module__}.{type(model).__name__}",
                  "id2label": {str(k): v for k, v in model.config.id2label.items()}}))
"""


def reference_logits(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, max_length: int, sentences: list[str]
) -> torch.Tensor:
    """One sentence at a time, so activations stay small beside the weights (the fresh process batches, which
    also checks that padding changes nothing)."""
    rows = []
    with torch.inference_mode():
        for sentence in sentences:
            encoded = tokenizer(sentence, truncation=True, max_length=max_length, return_tensors="pt")
            rows.append(model(**encoded).logits[0])
    return torch.stack(rows)


def verify_in_fresh_process(folder: Path, expected: torch.Tensor, labels: list[str], sentences: list[str]) -> float:
    """Reload the folder the way users will (Auto classes, remote code, its own tokenizer) in a process that
    shares nothing with this one, and compare its logits. An interruption kills the process (subprocess.run)."""
    completed = subprocess.run(
        [sys.executable, "-c", VERIFY_SCRIPT, str(folder.resolve())],
        input=json.dumps(sentences),
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise KoSentTypeError(f"verification failed: the saved folder does not load in a fresh process ({last_line})")
    reloaded = json.loads(completed.stdout.strip().splitlines()[-1])
    if reloaded["id2label"] != {str(index): label for index, label in enumerate(labels)}:
        raise KoSentTypeError(f"verification failed: reloaded labels {reloaded['id2label']} differ from {labels}")
    difference = (torch.tensor(reloaded["logits"]) - expected.float()).abs().max().item()
    if not math.isfinite(difference) or difference > MAX_ABS_LOGIT_DIFF:
        raise KoSentTypeError(f"verification failed: max abs logit difference {difference:.3g} > {MAX_ABS_LOGIT_DIFF}")
    return difference


# ---------------------------------------------------------------------------------------------------------------
# The conversion


def build_conversion(files: RunFiles, args: ConversionArguments) -> Conversion:
    """Read and check every input and build the model in memory; nothing is written yet."""
    label_mapping, raw_metrics = read_json(files.label_mapping), read_json(files.metrics)
    export_config, load_spec = read_json(files.export_config), read_json(files.load_spec)

    checkpoint = read_checkpoint(files.checkpoint, args.trust_checkpoint)
    report(
        f"checkpoint: {files.checkpoint}, weights under {checkpoint.location}; also held: {_keys(checkpoint.extras)}"
    )
    check_tensors_are_sound(checkpoint.state_dict, files.checkpoint)
    layout = find_source_layout(checkpoint.state_dict, files.checkpoint)
    labels, label_origin = resolve_labels(files, label_mapping, checkpoint, layout.head_weight.shape[0])
    report(f"labels: {', '.join(f'{i} {label}' for i, label in enumerate(labels))} (from {label_origin})")
    hints: Hints = [
        (str(files.export_config), _as_mapping(export_config)),
        (str(files.load_spec), _as_mapping(load_spec)),
        (f"{files.checkpoint} ['args']", _as_mapping(checkpoint.extras.get("args"))),
    ]
    backbone = args.backbone or first_value(hints, BACKBONE_KEYS, str)[0]
    architecture = resolve_architecture(backbone, layout.encoder, hints)
    report(f"architecture: {architecture.origin}")

    config = build_config(architecture, labels, hints)
    max_length = usable_max_length(config.encoder_config, hints)
    tokenizer, tokenizer_source = load_tokenizer(files, backbone)
    check_tokenizer_fits(tokenizer, tokenizer_source, layout.encoder["embeddings.word_embeddings.weight"].shape[0])

    model = empty_model(config)
    weights = map_weights(layout, model)
    casts = load_weights(model, weights)
    _report_mapping(weights, layout, casts, args.verbose)
    return Conversion(
        model=model.eval(),
        tokenizer=tokenizer,
        labels=labels,
        max_length=max_length,
        metrics=normalize_metrics(raw_metrics, labels),
        training_procedure={**training_procedure_from(export_config), "max_length": max_length},
    )


def fill_model_folder(folder: Path, conversion: Conversion, *, license: str, repo_id: str | None) -> None:
    """Write everything OUT will hold into `folder` (the staging folder) and prove it loads in a fresh process.

    The card comes last and lists what the folder holds, so a later step that adds files (an ONNX export) goes
    just before it.
    """
    conversion.model.save_pretrained(folder)
    save_tokenizer_for_hub(conversion.tokenizer, folder, max_length=conversion.max_length)
    expected = reference_logits(conversion.model, conversion.tokenizer, conversion.max_length, VERIFICATION_SENTENCES)
    difference = verify_in_fresh_process(folder, expected, conversion.labels, VERIFICATION_SENTENCES)
    report(
        f"verified: max abs logit difference {difference:.3g} over {len(VERIFICATION_SENTENCES)} sentences "
        "(fresh process, AutoModelForSequenceClassification + AutoTokenizer, trust_remote_code=True)"
    )
    config = conversion.model.config
    write_model_card(
        folder, config, conversion.metrics, conversion.training_procedure, license=license, repo_id=repo_id
    )


def convert(args: ConversionArguments) -> Path:
    """The whole conversion: OUT appears complete and verified, or (on any error or signal) not at all."""
    files = resolve_run_files(args)
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir, files, args.overwrite)
    conversion = build_conversion(files, args)
    with staged_folder(output_dir, replace=args.overwrite) as staging:
        fill_model_folder(staging, conversion, license=args.license, repo_id=args.push_to_hub)
    report(f"wrote {output_dir}: {', '.join(sorted(p.name for p in output_dir.iterdir()))}")
    return output_dir


def push_folder(folder: Path, repo_id: str, private: bool, commit_message: str) -> str:
    """Create the repository if needed and upload the folder; the token comes from HF_TOKEN or `hf auth login`."""
    from huggingface_hub import HfApi

    api = HfApi()
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message, repo_type="model")
    return str(repo_url)


def _as_mapping(value: Any) -> Mapping | None:
    if isinstance(value, Mapping):
        return value
    return vars(value) if hasattr(value, "__dict__") and not isinstance(value, torch.Tensor) else None


def _keys(mapping: Mapping) -> str:
    return ", ".join(map(str, mapping)) or "nothing else"


def _report_mapping(weights: MappedWeights, layout: SourceLayout, casts: list[str], verbose: bool) -> None:
    encoder_count = sum(1 for _, target in weights.pairs if target.startswith("kosenttype.encoder."))
    report(
        f"mapped {len(weights.pairs)} tensors: '{layout.encoder_prefix}*' → 'kosenttype.encoder.*' ({encoder_count}), "
        f"'{layout.head_prefix}weight/bias' → 'classifier.weight/bias' {list(layout.head_weight.shape)}"
    )
    if verbose:
        for source, target in weights.pairs:
            report(f"  {source} → {target}")
    report(f"dropped on purpose (unused by the classifier): {', '.join(weights.dropped) or 'nothing'}")
    if casts:
        report(f"cast to float32 from: {', '.join(casts)}")


def report(line: str) -> None:
    print(line, flush=True)


def run(argv: list[str] | None) -> int:
    parser = HfArgumentParser(ConversionArguments, prog=PROGRAM, description=__doc__.split("\n\n")[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    output_dir = convert(args)
    if args.push_to_hub:
        try:
            report(f"published: {push_folder(output_dir, args.push_to_hub, args.private, args.commit_message)}")
        except Exception as error:
            raise KoSentTypeError(
                f"{output_dir} was written, but pushing it to {args.push_to_hub} failed: {one_line(error, 300)}"
            ) from None
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(PROGRAM, lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
