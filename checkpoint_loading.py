"""Reading a training script's `torch.save` file without running its code (only tensors and plain data are
unpickled, memory-mapped; anything else is refused by name), and finding the weights inside it."""

from __future__ import annotations

import contextlib
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import KoSentTypeError, one_line

# Where training scripts put the weights inside a checkpoint dict, most specific first.
STATE_DICT_KEYS = ("model_state_dict", "state_dict", "model", "model_state", "net", "network", "weights", "module")
TOP_LEVEL = "the top level"
# Prefixes that wrappers add to every key: DataParallel/DDP and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"


@dataclass
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    location: str
    extras: dict[str, Any]


def read_checkpoint(path: Path, trust: bool) -> Checkpoint:
    """The weights (wrapper prefixes removed), where they were found, and everything else the file holds."""
    loaded = load_checkpoint_object(path, trust)
    if isinstance(loaded, torch.nn.Module):
        return Checkpoint(state_dict=dict(loaded.state_dict()), location="a pickled nn.Module", extras={})
    if not isinstance(loaded, Mapping):
        raise KoSentTypeError(f"{path}: holds a {type(loaded).__name__}, not a state dict or a dict holding one")
    state_dict, location = _find_state_dict(loaded, path)
    extras = {key: value for key, value in loaded.items() if key != location} if location != TOP_LEVEL else {}
    return Checkpoint(state_dict=_strip_wrapper_prefixes(state_dict), location=location, extras=extras)


def word_embedding_keys(state_dict: Mapping[str, Any]) -> list[str]:
    """The keys of an encoder's word embeddings: what marks a tensor dict as a text model's weights."""
    return [key for key in state_dict if key.endswith(WORD_EMBEDDINGS)]


def safe_checkpoint_globals() -> list[Any]:
    """Plain data training scripts save beside the weights, under every name numpy/python versions pickle it as."""
    import argparse
    import datetime
    import pathlib

    import numpy

    multiarray = numpy._core.multiarray if hasattr(numpy, "_core") else numpy.core.multiarray
    dtype_classes = [type(numpy.dtype(code)) for code in "?bBhHiIlLqQefdgFD"] + [type(numpy.dtype("U1"))]
    paths = [pathlib.PosixPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]
    plain = [argparse.Namespace, datetime.datetime, datetime.date, datetime.timedelta, numpy.dtype, numpy.ndarray]
    functions = [multiarray.scalar, multiarray._reconstruct]
    renamed = [(f, f"numpy.{core}.multiarray.{f.__name__}") for f in functions for core in ("core", "_core")]
    return plain + dtype_classes + paths + renamed + [(path, f"pathlib.{path.__name__}") for path in paths]


def load_checkpoint_object(path: Path, trust: bool) -> Any:
    """`torch.load` with only tensors and plain data allowed (everything with `trust`), memory-mapped."""
    is_zip = zipfile.is_zipfile(path)
    with path.open("rb") as stream:
        head = stream.read(4)
    if not head:
        raise KoSentTypeError(f"{path}: empty file, not a PyTorch checkpoint")
    if head.startswith(b"PK") and not is_zip:
        raise KoSentTypeError(f"{path}: truncated or corrupt PyTorch checkpoint (its zip archive is incomplete)")
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False, mmap=is_zip)
        with torch.serialization.safe_globals(safe_checkpoint_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as error:
        raise _explain_load_failure(path, error, is_zip, trust) from None


def _explain_load_failure(path: Path, error: Exception, is_zip: bool, trust: bool) -> KoSentTypeError:
    message = one_line(error, limit=2000)
    weights_only_failure = "Weights only load failed" in message
    # What the safe load refuses: torch names one global; the zip format's pickle can be scanned for all of them.
    refused = list(dict.fromkeys(re.findall(r"GLOBAL ([\w.]+) (?:was|whose)", message))) if weights_only_failure else []
    if weights_only_failure and is_zip:
        allowed = {
            entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}"
            for entry in safe_checkpoint_globals()
        }
        with contextlib.suppress(Exception):  # if the scan fails, the error message's own entry still says enough
            refused = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - allowed) or refused
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


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(t, torch.Tensor) for t in value.values())


def _find_state_dict(loaded: Mapping, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The top level, a well-known key, or else the one tensor dict that holds word embeddings."""
    if _is_state_dict(loaded):
        return dict(loaded), TOP_LEVEL
    for key in STATE_DICT_KEYS:
        value = loaded.get(key)
        if isinstance(value, torch.nn.Module):
            return dict(value.state_dict()), key
        if _is_state_dict(value):
            return dict(value), key
    candidates = [key for key, value in loaded.items() if _is_state_dict(value) and word_embedding_keys(value)]
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
