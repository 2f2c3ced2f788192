"""The inference engine: `load_classifier` picks the backend (torch_backend or onnx_backend, each importing its
runtime only when asked for) and returns a `classifier.Classifier`. Imports neither torch nor transformers."""

from __future__ import annotations

import os
import sys

from .classifier import (  # noqa: F401 - the engine's public names, re-exported
    CPU_BATCH_TOKENS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_LENGTH,
    TYPE_HEAD,
    Classifier,
    EngineSettings,
    heads_from_config,
    sigmoid,
    softmax,
)
from .errors import KoSentTypeError

BACKENDS = ("torch", "onnxruntime")


def limit_threads(threads: int, backend: str) -> None:
    """OpenMP's variable (what onnxruntime reads when its session starts) and, for torch, its own setting."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)


def load_classifier(
    model: str | os.PathLike,
    *,
    backend: str = "torch",
    device: str = "auto",
    precision: str = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> Classifier:
    """A saved classifier folder or Hub id on `backend` (onnxruntime: the folder's `onnx/` files, no torch at all),
    ready to classify; `KoSentTypeError` in one line when it can't be loaded."""
    if not sys.stderr.isatty():  # no download bars in logs and pipes: commands keep stderr to their own lines
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if backend == "torch":
        from .torch_backend import load_torch_classifier

        return load_torch_classifier(
            model, device=device, precision=precision, revision=revision, trust_remote_code=trust_remote_code
        )
    if backend == "onnxruntime":
        from .onnx_backend import load_onnx_classifier

        return load_onnx_classifier(model, device=device, precision=precision, revision=revision)
    raise KoSentTypeError(f"unknown backend {backend!r} (expected one of: {', '.join(BACKENDS)})")
