"""Length-sorted, token-budgeted batching: how every backend turns many sentences into few, tightly packed passes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def length_sorted_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length, so that padding each to its longest wastes little.

    A batch closes at `batch_size` sentences, or before its padded size (sentences × longest) would pass
    `max_batch_tokens`, which keeps batches of long sentences from blowing up attention memory.
    """
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
    width = max(len(ids) for ids in token_ids)
    input_ids = np.full((len(token_ids), width), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(token_ids), width), dtype=np.int64)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask
