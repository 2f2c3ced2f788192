"""Checks that a checkpoint's tensors are sound before they become a model: finite values, no storage repeated by
a stride-0 view, and an embedding the tokenizer agrees with. Each failure names the file, the tensor and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from .errors import KoSentTypeError

FINITE_CHECK_SLICE = 2**20
# Embedding rows a tokenizer may leave unused: vocabularies are padded to a multiple of 8-128 for speed and some
# reserve tokens (T5 +28, DeBERTa-v3 +99, Qwen2 +271). Far more rows than that means the wrong tokenizer.
UNUSED_EMBEDDING_ROWS = 1024
UNUSED_EMBEDDING_FRACTION = 0.1


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


def check_tokenizer_fits(tokens: int, embedding_rows: int, source: str) -> None:
    """Every one of the tokenizer's `tokens` must have an embedding row, and (nearly) every row a token: an
    embedding far larger than the vocabulary (5,000,000 rows for 519 tokens) means the wrong tokenizer or a
    damaged checkpoint."""
    if tokens > embedding_rows:
        raise KoSentTypeError(f"{source}: tokenizer has {tokens} tokens, the encoder embeds only {embedding_rows}")
    if embedding_rows - tokens > max(UNUSED_EMBEDDING_ROWS, UNUSED_EMBEDDING_FRACTION * tokens):
        raise KoSentTypeError(
            f"{source}: tokenizer has {tokens} tokens, but the checkpoint's word embeddings have {embedding_rows} "
            "rows: pass the tokenizer the run trained with (--tokenizer DIR), or check the checkpoint"
        )
