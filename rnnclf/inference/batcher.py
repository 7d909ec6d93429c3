"""Dynamic batching for the HTTP server: requests that arrive together are scored together.

Requests join a bounded queue (counted in documents); one scoring task takes from its front up to
`max_batch` documents, waiting at most `max_wait` seconds after the oldest queued request arrived for
more to come, and scores them in one call on a scoring thread, so the event loop keeps reading and
answering requests meanwhile. The predictor sorts a call's documents by length (as `eval` does), so
short and long documents of different requests do not pad each other.

    requests     r1(3 docs) r2(1) r3(5)        r4(2) r5(8) ...
    queue        [r1 r2 r3] -> one call of 9 documents -> answers split back per request
                                                [r4 r5] -> next call, while r1-r3's answers go out

When the queue already holds `max_queue` documents a new request is refused at once (Overloaded:
HTTP 503), so under overload memory and waiting time stay bounded instead of growing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

# What the scoring thread calls: texts -> one plain dict per text (the `predict --json` record).
ScoreFunction = Callable[[list[str]], list[dict[str, Any]]]


class Overloaded(Exception):
    """The queue is full: the request is refused rather than queued (HTTP 503)."""


@dataclass
class Job:
    texts: list[str]
    top_k: int | None
    arrived: float  # event-loop time
    future: asyncio.Future = field(repr=False)


def trimmed(record: dict[str, Any], top_k: int | None) -> dict[str, Any]:
    """A prediction scored with every label, cut to what `predict --top-k K` shows: single-label, the
    K most likely probabilities; multi-label, at most K chosen labels (every probability stays)."""
    if top_k is None:
        return record
    if "labels" in record:
        return {**record, "labels": record["labels"][:top_k]}
    return {**record, "probabilities": dict(islice(record["probabilities"].items(), top_k))}


class Batcher:
    """The queue and the scoring task of one server process."""

    def __init__(self, score: ScoreFunction, max_batch: int, max_wait: float, max_queue: int) -> None:
        self.score = score
        self.max_batch = max_batch
        self.max_wait = max_wait  # seconds
        self.max_queue = max_queue  # documents waiting (not yet being scored)
        self.queue: deque[Job] = deque()
        self.waiting = 0  # documents in the queue
        self.batches = 0  # scoring calls made (for /health)
        self._wakeup = asyncio.Event()
        # One scoring thread: the predictor spreads a call over the cores itself where that pays.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="rnnclf-scoring")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rnnclf-batcher")

    async def stop(self) -> None:
        """Called once no request is in flight any more (uvicorn drains connections first)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str], top_k: int | None) -> list[dict[str, Any]]:
        """Queue the texts and wait for their predictions; Overloaded when the queue is full."""
        if self.waiting + len(texts) > self.max_queue and self.waiting > 0:
            raise Overloaded(f"{self.waiting} documents are already waiting")
        loop = asyncio.get_running_loop()
        job = Job(texts, top_k, loop.time(), loop.create_future())
        self.queue.append(job)
        self.waiting += len(texts)
        self._wakeup.set()
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Wait for more documents, but never past max_wait after the oldest request arrived: a
            # request that queued while the previous batch was scored is not kept waiting again.
            deadline = self.queue[0].arrived + self.max_wait
            while self.waiting < self.max_batch and (left := deadline - loop.time()) > 0:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), left)
            batch = self._take()
            if not batch:
                continue
            self.batches += 1
            texts = [text for job in batch for text in job.texts]
            try:
                records = await loop.run_in_executor(self._executor, self.score, texts)
            except Exception as err:  # a scoring failure answers its requests (HTTP 500), not the server
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            start = 0
            for job in batch:
                mine = records[start : start + len(job.texts)]
                start += len(job.texts)
                if not job.future.done():  # the client may have gone away meanwhile
                    job.future.set_result([trimmed(record, job.top_k) for record in mine])

    async def call(self, work: Callable[[], Any], documents: int) -> Any:
        """Run `work` alone on the scoring thread (explanations: many variants of few documents), under
        the same queue bound as a request of `documents` documents."""
        if self.waiting + documents > self.max_queue:
            raise Overloaded(f"{self.waiting} documents are already waiting")
        self.waiting += documents
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        finally:
            self.waiting -= documents

    def _take(self) -> list[Job]:
        """Jobs from the front of the queue up to max_batch documents (at least one job)."""
        batch: list[Job] = []
        count = 0
        while self.queue and (not batch or count + len(self.queue[0].texts) <= self.max_batch):
            job = self.queue.popleft()
            self.waiting -= len(job.texts)
            if job.future.done():  # cancelled: the client disconnected before it was scored
                continue
            batch.append(job)
            count += len(job.texts)
        return batch
