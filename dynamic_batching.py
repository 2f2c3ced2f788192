"""Dynamic batching: requests that arrive together run as one model call, in one worker thread, from a bounded queue.

    batcher = DynamicBatcher(run_model, max_batch_size=32, max_wait_s=0.005, max_queue=1024)
    batcher.start()
    future = batcher.submit(["문장 하나.", "또 하나?"])   # a concurrent.futures.Future; QueueFull when full
    results = future.result()                              # one result per item, in order

A request (a "job") is a list of items. The worker takes the jobs waiting at the head of the queue, whole, until
their items reach `max_batch_size` or the oldest has waited `max_wait_s`, hands all their items to `process` in
one call, and gives each job back its own slice of the results. `process` sees only items, never jobs, so a job's
results cannot depend on which other jobs shared its batch beyond what `process` itself does with a batch.

The queue holds at most `max_queue` items: a job that would pass it is refused at once (`QueueFull`), before it
is accepted, so that a server under overload answers "come back later" instead of queueing without bound.
`close()` stops accepting and lets the worker finish every job already accepted. Nothing here knows about HTTP,
asyncio or the model; a server wraps the futures with `asyncio.wrap_future`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class QueueFull(Exception):
    """The job would take the queue past its limit; it was not accepted."""


class BatcherClosed(Exception):
    """The batcher has stopped accepting jobs (the server is shutting down)."""


@dataclass
class _Job(Generic[Item]):
    items: Sequence[Item]
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


class DynamicBatcher(Generic[Item, Result]):
    """Gathers concurrent jobs into batches for one worker thread that runs `process` on each batch's items.

    `on_batch(items, seconds)` is called after each batch (for metrics), from the worker thread.
    """

    def __init__(
        self,
        process: Callable[[list[Item]], Sequence[Result]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[int, float], Any] | None = None,
        name: str = "dynamic-batcher",
    ) -> None:
        self.process = process
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._jobs: deque[_Job[Item]] = deque()
        self._queued_items = 0
        self._closed = False
        self._changed = threading.Condition()
        self._worker = threading.Thread(target=self._work, name=name, daemon=True)

    def start(self) -> None:
        self._worker.start()

    @property
    def queued_items(self) -> int:
        """Items waiting for a batch (not counting the batch that is running)."""
        return self._queued_items

    @property
    def queued_jobs(self) -> int:
        return len(self._jobs)

    def submit(self, items: Sequence[Item]) -> Future:
        """Queue a job; its future gets one result per item, in order, or the exception `process` raised.

        Raises `QueueFull` or `BatcherClosed` without queueing anything.
        """
        job = _Job(items)
        with self._changed:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            if self._queued_items + len(items) > self.max_queue:
                raise QueueFull(f"the queue is full ({self._queued_items} of {self.max_queue} sentences waiting)")
            self._jobs.append(job)
            self._queued_items += len(items)
            self._changed.notify()
        return job.future

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new jobs, let the worker finish every accepted one, and wait for it; False if it didn't finish."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._worker.is_alive():
            self._worker.join(timeout)
        return not self._worker.is_alive()

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(batch)

    def _next_batch(self) -> list[_Job[Item]] | None:
        """The next batch of jobs: at once when `max_batch_size` items wait, the oldest job has waited `max_wait_s`,
        or the batcher is closing; None once it is closed and empty."""
        with self._changed:
            while not self._jobs and not self._closed:
                self._changed.wait()
            if not self._jobs:
                return None
            deadline = self._jobs[0].enqueued + self.max_wait_s
            while self._queued_items < self.max_batch_size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self._take_batch()

    def _take_batch(self) -> list[_Job[Item]]:
        """Whole jobs from the head of the queue up to `max_batch_size` items (always at least one job), skipping
        jobs whose caller has given up (cancelled futures)."""
        batch: list[_Job[Item]] = []
        size = 0
        while self._jobs and (not batch or size + len(self._jobs[0].items) <= self.max_batch_size):
            job = self._jobs.popleft()
            self._queued_items -= len(job.items)
            if job.future.set_running_or_notify_cancel():
                batch.append(job)
                size += len(job.items)
        return batch

    def _run(self, batch: list[_Job[Item]]) -> None:
        items = [item for job in batch for item in job.items]
        if not items:
            return
        started = time.perf_counter()
        try:
            results = self.process(items)
        except Exception as error:  # the model failed: every job of this batch gets the error, the worker goes on
            for job in batch:
                job.future.set_exception(error)
            return
        finally:
            if self.on_batch is not None:
                self.on_batch(len(items), time.perf_counter() - started)
        start = 0
        for job in batch:
            job.future.set_result(list(results[start : start + len(job.items)]))
            start += len(job.items)
