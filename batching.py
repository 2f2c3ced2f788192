"""Length-sorted, token-budgeted batching: many sentences into few, tightly packed passes, on every backend."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def length_sorted_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None) -> Iterator[list[int]]:
    """Indices in batches of similar length (padding wastes little), closed at `batch_size` sentences or before the
    padded size (sentences × longest) passes `max_batch_tokens`, which bounds the attention's memory."""
    batch: list[int] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        too_many_tokens = bool(max_batch_tokens) and (len(batch) + 1) * lengths[index] > max_batch_tokens
        if batch and (len(batch) == batch_size or too_many_tokens):
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def pad_batch(token_ids: Sequence[Sequence[int]], pad_token_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) as int64 arrays, right-padded to the batch's longest sentence."""
    lengths = np.array([len(ids) for ids in token_ids])
    input_ids = np.full((len(token_ids), lengths.max()), pad_token_id, dtype=np.int64)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = ids
    return input_ids, (np.arange(input_ids.shape[1]) < lengths[:, None]).astype(np.int64)
