"""The inference engine: sentences in, predictions out, in input order, in bounded memory, on any backend.

    classifier = load_classifier("path/or/hub-id")                  # torch (default) or backend="onnxruntime"
    for prediction in classifier.classify(["문장 하나.", "또 하나?"]):
        print(prediction.label, prediction.score)

`load_classifier` picks the backend (torch_backend or onnx_backend, each importing its runtime only when asked
for) and returns a `classifier.Classifier`, which does everything that is the same for every backend, the
command, the server and the distributed runner. This module imports neither torch nor transformers.
"""

from __future__ import annotations

import os

from .classifier import (
    CPU_BATCH_TOKENS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LENGTH,
    TYPE_HEAD,
    Classifier,
    EngineSettings,
    heads_from_config,
    sigmoid,
    softmax,
)
from .errors import KoSentTypeError

__all__ = [
    "BACKENDS",
    "CPU_BATCH_TOKENS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_LENGTH",
    "TYPE_HEAD",
    "Classifier",
    "EngineSettings",
    "heads_from_config",
    "limit_threads",
    "load_classifier",
    "sigmoid",
    "softmax",
]

BACKENDS = ("torch", "onnxruntime")


def limit_threads(threads: int, backend: str) -> None:
    """The math threads of this process: OpenMP's variable (what onnxruntime reads when its session starts) and,
    for torch, its own setting."""
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
    """Load a saved classifier folder or Hub id on `backend`, ready to classify.

    torch runs any transformers sequence classifier (`precision` auto = bf16 on CPUs with native bf16, else fp32;
    int8 on CPUs, fp16/bf16 on GPUs). onnxruntime runs the folder's `onnx/model.onnx` (fp32) or
    `onnx/model_quantized.onnx` (int8) with no torch at all. Raises `KoSentTypeError` in one line when the model
    can't be loaded.
    """
    if backend == "torch":
        from .torch_backend import load_torch_classifier

        return load_torch_classifier(
            model, device=device, precision=precision, revision=revision, trust_remote_code=trust_remote_code
        )
    if backend == "onnxruntime":
        from .onnx_backend import load_onnx_classifier

        return load_onnx_classifier(model, device=device, precision=precision, revision=revision)
    raise KoSentTypeError(f"unknown backend {backend!r} (expected one of: {', '.join(BACKENDS)})")
