"""What the commands that run a model share on the command line, so that kosenttype-predict and kosenttype-serve
take the same model options and say the same things."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import field
from typing import Any

from .classifier import PRECISIONS, Classifier, EngineSettings
from .engine import BACKENDS, load_classifier
from .errors import KoSentTypeError


def option(help: str, default: Any = None, **metadata: Any) -> Any:
    """A dataclass field as HfArgumentParser reads it: its default (`dataclasses.MISSING`: required) and --help."""
    return field(default=default, metadata={"help": help, **metadata})


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --backend, --device, --precision, --revision and --trust_remote_code."""
    add = parser.add_argument
    add("--model", required=True, help="A saved classifier folder or a Hub model id.")
    add("--backend", choices=BACKENDS, default="torch", help="torch (default) or onnxruntime (needs onnx/ files).")
    add("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when available).")
    add(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: torch runs bf16 on CPUs with AVX-512 BF16/AMX, else fp32 (int8 and fp16 on GPUs are opt-in); "
        "onnxruntime runs int8 where onnx/model_quantized.onnx exists, else fp32.",
    )
    add("--revision", help="The Hub revision (branch, tag or commit).")
    add(
        "--trust_remote_code",
        action="store_true",
        help="Run Python code shipped in the model folder (never needed for kosenttype models once installed).",
    )


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """`load_classifier`'s keyword arguments from the options `add_model_arguments` added."""
    return {name: getattr(args, name) for name in ("backend", "device", "precision", "revision", "trust_remote_code")}


def load_from_arguments(args: argparse.Namespace) -> Classifier:
    return load_classifier(args.model, **model_options(args))


def engine_settings(args: argparse.Namespace, progress: Callable[[int], None] | None = None) -> EngineSettings:
    """The batching options of kosenttype-predict (local or on Ray) as the engine takes them."""
    return EngineSettings(
        batch_size=args.batch_size,
        max_length=args.max_length,
        top_k=args.top_k,
        chunk_size=args.chunk_size,
        max_batch_tokens=args.max_batch_tokens,
        progress=progress,
    )


def reading_options(args: argparse.Namespace) -> dict[str, Any]:
    """`readers.read_records`' options from kosenttype-predict's, for the local and the Ray engine alike."""
    return {name: getattr(args, name) for name in ("text_column", "id_column", "max_line_bytes")}


def check_at_least(args: argparse.Namespace, names: Iterable[str], minimum: int = 1) -> None:
    """Refuse counts below `minimum`, in the option's own name (None: not given, the default applies)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            qualifier = " (0: no limit)" if minimum == 0 else ""
            raise KoSentTypeError(f"--{name} must be at least {minimum}{qualifier}, got {value}")
