"""The server's limits, apart from the server itself: kosenttype-serve takes its option defaults from them before
the serve extra (FastAPI) is imported."""

from __future__ import annotations

from dataclasses import dataclass

from .classifier import DEFAULT_MAX_LENGTH

# A dynamic batch is a few dozen sentences of mixed lengths, not predict's length-sorted chunk: on DACON sentences in
# batches of 28 the padded tokens were 1.53x the real ones at predict's CPU budget of 1,024 tokens, 1.18x at 256, and
# the 12-layer model ran at 70% and 95% of predict's sentences/s (benchmarks/bench_serve.py measures the server).
CPU_SERVER_BATCH_TOKENS = 256


@dataclass(frozen=True)
class ServingLimits:
    """How the server batches and what it refuses. `max_queue` counts sentences waiting for a batch;
    `max_input_length` counts characters; `max_length` is the tokens a sentence is truncated to (as in predict).
    `max_batch_tokens`: None = CPU_SERVER_BATCH_TOKENS on a CPU, no limit on a GPU; 0 = no limit."""

    max_batch_size: int = 64
    max_batch_tokens: int | None = None
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    max_client_batch_size: int = 32
    max_input_length: int = 10_000
    max_length: int = DEFAULT_MAX_LENGTH
    max_body_bytes: int = 2_000_000
