"""Dynamic batching: jobs (lists of items) that arrive together run as one `process` call in one worker thread, from
a queue bounded in items; each job gets its own slice of the results through a Future. Nothing here knows about HTTP,
asyncio or the model (a server wraps the futures with `asyncio.wrap_future`)."""

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
    """The worker takes the jobs at the head of the queue, whole, until their items reach `max_batch_size` or the
    oldest has waited `max_wait_s`, and runs `process` once on all their items; `process` never sees jobs, so a
    job's results can't depend on which others shared its batch. A job that would take the queue past `max_queue`
    items is refused at once (`QueueFull`), so that overload is answered "come back later" instead of queueing
    without bound. `on_batch(items, seconds)` is called after each batch (for metrics), from the worker thread."""

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
        self.process, self.on_batch = process, on_batch
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_s, max_queue
        self._jobs: deque[_Job[Item]] = deque()
        self.queued_items = 0  # items waiting for a batch, not counting the batch that is running
        self._closed = False
        self._changed = threading.Condition()
        self._worker = threading.Thread(target=self._work, name=name, daemon=True)

    def start(self) -> None:
        self._worker.start()

    @property
    def queued_jobs(self) -> int:
        return len(self._jobs)

    def submit(self, items: Sequence[Item]) -> Future:
        """Queue a job (or raise `QueueFull` or `BatcherClosed`); its future gets one result per item, in order."""
        job = _Job(items)
        with self._changed:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            if self.queued_items + len(items) > self.max_queue:
                raise QueueFull(f"the queue is full ({self.queued_items} of {self.max_queue} sentences waiting)")
            self._jobs.append(job)
            self.queued_items += len(items)
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
        """Whole jobs from the head of the queue up to `max_batch_size` items (at least one job; cancelled ones
        skipped), once that many wait, the oldest has waited `max_wait_s`, or the batcher is closing; None once it
        is closed and empty."""
        with self._changed:
            while not self._jobs and not self._closed:
                self._changed.wait()
            if not self._jobs:
                return None
            deadline = self._jobs[0].enqueued + self.max_wait_s
            while self.queued_items < self.max_batch_size and not self._closed and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            batch: list[_Job[Item]] = []
            size = 0
            while self._jobs and (not batch or size + len(self._jobs[0].items) <= self.max_batch_size):
                job = self._jobs.popleft()
                self.queued_items -= len(job.items)
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
