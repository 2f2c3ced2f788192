"""The torch backend: any transformers sequence classifier, in fp32, bf16, fp16 or int8, on a CPU or a GPU."""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from .classifier import PRECISIONS, TYPE_HEAD, Classifier, classifier_from_config
from .errors import KoSentTypeError, one_line
from .model_location import locate_model

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: without them oneDNN emulates bf16 matmuls, which then run slower than fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise KoSentTypeError(f"unknown device {device!r} (expected cpu, cuda, cuda:N or auto)") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise KoSentTypeError(f"--device {device}: no CUDA device is available here (use --device cpu or auto)")
    return resolved


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision to run in, refusing combinations the hardware would run badly or not at all. `auto` is bf16
    on CPUs with native bf16, else fp32: int8 and GPU bf16/fp16 are opt-in (agreement figures: docs/predicting.md)."""
    if precision not in PRECISIONS:
        raise KoSentTypeError(f"unknown precision {precision!r} (expected one of: {', '.join(PRECISIONS)})")
    on_cpu = device.type == "cpu"
    if precision == "auto":
        return "bf16" if on_cpu and cpu_has_native_bf16() else "fp32"
    if precision == "int8" and not on_cpu:
        raise KoSentTypeError("--precision int8 (dynamic quantization) runs on CPU only; use bf16 or fp16 on a GPU")
    if precision == "fp16" and on_cpu:
        raise KoSentTypeError("--precision fp16 needs a GPU; on a CPU use bf16 (where supported), int8 or fp32")
    if precision == "bf16" and on_cpu and not cpu_has_native_bf16():
        raise KoSentTypeError(
            "--precision bf16: this CPU has no AVX-512 BF16 or AMX, so bf16 would be slower than fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise KoSentTypeError("--precision bf16: this GPU does not support bf16; use fp16")
    return precision


def quantize_linear_layers(module: nn.Module) -> None:
    """int8 dynamic quantization, in place, of every nn.Linear in `module`: one weight scale per output channel
    (per-tensor scales moved probabilities about 1.5× further from fp32), activations quantized per batch."""
    with warnings.catch_warnings():  # torch marks eager quantization deprecated in favour of torchao
        warnings.simplefilter("ignore")
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        torch.ao.quantization.quantize_dynamic(module, {nn.Linear: qconfig}, inplace=True)


class TorchBackend:
    """Runs a prepared model under `torch.inference_mode`; logits come back as float32 numpy arrays per head."""

    name = "torch"

    def __init__(self, model: PreTrainedModel, precision: str) -> None:
        self.model = model
        self.precision = precision
        self.device = model.device.type
        self.attribute_names = list(getattr(model.config, "attributes", None) or {})

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        device = self.model.device
        with torch.inference_mode():
            outputs = self.model(
                input_ids=torch.from_numpy(input_ids).to(device, non_blocking=True),
                attention_mask=torch.from_numpy(attention_mask).to(device, non_blocking=True),
            )
        heads = {TYPE_HEAD: outputs.logits}
        heads.update(zip(self.attribute_names, getattr(outputs, "attribute_logits", None) or (), strict=True))
        return {head: logits.float().cpu().numpy() for head, logits in heads.items()}


def load_torch_classifier(
    model: str | os.PathLike,
    *,
    device: str = "auto",
    precision: str = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> Classifier:
    """Load any Hugging Face sequence classifier and its tokenizer as a `Classifier` on the torch backend."""
    resolved_device = resolve_device(device)
    precision = resolve_precision(precision, resolved_device)
    location = locate_model(model)
    options = {"revision": revision, "trust_remote_code": trust_remote_code}
    if not sys.stderr.isatty():  # no "Loading weights" bars in logs and pipes; commands keep stderr to their lines
        transformers.utils.logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **options)
        # Loaded straight in the target dtype: a bf16 model then never holds an fp32 copy of its weights.
        loaded = AutoModelForSequenceClassification.from_pretrained(location, dtype=TORCH_DTYPES[precision], **options)
    except Exception as error:  # transformers, safetensors and the Hub client raise many types for "can't load"
        problem = f"{type(error).__name__}: {one_line(error)}"
        if "trust_remote_code" in str(error):
            problem = "it needs its own code to run; pass --trust_remote_code if you trust its author"
        raise KoSentTypeError(f"cannot load model {location}: {problem}") from error
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise KoSentTypeError(f"{location} has no fast tokenizer (tokenizer.json); the engine needs one")
    loaded = loaded.eval().to(device=resolved_device, dtype=TORCH_DTYPES[precision])
    if precision == "int8":  # the encoder only: the heads are a few thousand weights, cheap to keep in fp32
        quantize_linear_layers(loaded.base_model)
    return classifier_from_config(
        TorchBackend(loaded, precision),
        Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()),  # a private copy, which the engine drives itself
        loaded.config.to_dict(),
        name=os.fspath(model),
        tokenizer_limit=tokenizer.model_max_length,
    )
