"""Checks that a checkpoint's tensors are sound before they become a model: finite, no storage repeated by a
stride-0 view, an embedding the tokenizer agrees with. Each failure names the file, the tensor and what to do."""

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
    """Refuse a view that repeats its storage (stride 0, `expand`: small in the checkpoint, written out in full by
    safetensors, 224 KB became 960 MB) and any NaN/inf (the verification sentences may never reach it)."""
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
        # In slices of a million values, so the check's temporary stays small beside the mapped weights.
        pieces = tensor.reshape(-1).split(FINITE_CHECK_SLICE) if tensor.is_floating_point() else []
        if not all(bool(torch.isfinite(piece).all()) for piece in pieces):
            bad = ~torch.isfinite(tensor)
            first = [int(index) for index in bad.nonzero()[0]]
            raise KoSentTypeError(
                f"{path}: tensor {key} {list(tensor.shape)} holds {int(bad.sum())} NaN/inf value(s), the first at "
                f"{first} ({tensor[tuple(first)].item()}); the training run diverged or the file is damaged"
            )


def check_tokenizer_fits(tokens: int, embedding_rows: int, source: str) -> None:
    """Every token needs an embedding row, and (nearly) every row a token: far more rows than tokens means the wrong
    tokenizer or a damaged checkpoint."""
    if tokens > embedding_rows:
        raise KoSentTypeError(f"{source}: tokenizer has {tokens} tokens, the encoder embeds only {embedding_rows}")
    if embedding_rows - tokens > max(UNUSED_EMBEDDING_ROWS, UNUSED_EMBEDDING_FRACTION * tokens):
        raise KoSentTypeError(
            f"{source}: tokenizer has {tokens} tokens, but the checkpoint's word embeddings have {embedding_rows} "
            "rows: pass the tokenizer the run trained with (--tokenizer DIR), or check the checkpoint"
        )
