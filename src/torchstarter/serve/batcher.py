"""Requests that arrive together run through the model as one batch.

Each request's inputs wait in a queue; one worker takes the first waiting request, then
keeps taking more until the batch holds `max_batch` inputs or `max_wait` seconds have
passed since it started, runs the model once on all of them in a worker thread (the
event loop stays free to accept and parse requests meanwhile), and hands each request
its own rows. It waits only when company is likely: while other requests are being read
or decoded, or when the last batch served several clients (they tend to come back
together); a lone client is not kept waiting. max_batch 1 turns batching off. A request
larger than max_batch runs as one batch of its own: it is never split, so its rows
always come from one call.

The queue is bounded (`max_waiting` inputs): past it a request is refused at once (the
server answers 503) rather than piling up work no one may wait for; and a request whose
client has gone (the server cancels its handler) is dropped before it reaches the model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Rows = list[dict[str, Any]]


class Busy(Exception):
    """The queue holds max_waiting inputs already: try again shortly."""


class Batcher:
    def __init__(self, predict: Callable[[list[Any]], Rows], max_batch: int, max_wait: float,
                 max_waiting: int = 1024):
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait
        self.max_waiting, self.waiting = max_waiting, 0
        self.arriving = 0  # requests being read and decoded: the server counts them
        self.last_requests = 0  # how many requests the last batch answered
        self.queue: asyncio.Queue[tuple[list[Any], asyncio.Future[Rows]]] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.batches = self.inputs = 0
        self.largest = 0
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, inputs: list[Any]) -> Rows:
        if self.waiting + len(inputs) > self.max_waiting:
            raise Busy(f"{self.waiting} inputs are waiting for the model already (at most "
                       f"{self.max_waiting}); try again shortly")
        done: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        self.waiting += len(inputs)
        self.queue.put_nowait((inputs, done))
        return await done  # cancelled with the handler when the client goes

    def state_dict(self) -> dict[str, Any]:
        """What /health reports: how much batching actually happened."""
        return {"max_batch": self.max_batch, "max_wait_ms": round(self.max_wait * 1000, 3),
                "batches": self.batches, "inputs": self.inputs, "largest_batch": self.largest,
                "waiting": self.waiting}

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            size = len(jobs[0][0])
            deadline = time.monotonic() + self.max_wait
            while size < self.max_batch:
                try:  # what is already waiting joins at once; then wait up to the deadline
                    job = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - time.monotonic()
                    if left <= 0 or not (self.arriving or self.last_requests > 1):
                        break  # no one else is on the way
                    try:
                        job = await asyncio.wait_for(self.queue.get(), left)
                    except TimeoutError:
                        break
                if size + len(job[0]) > self.max_batch:
                    await self._flush(loop, jobs)  # it would overflow: it starts the next
                    jobs, size = [job], len(job[0])
                    deadline = time.monotonic() + self.max_wait
                    continue
                jobs.append(job)
                size += len(job[0])
            await self._flush(loop, jobs)

    async def _flush(self, loop: asyncio.AbstractEventLoop,
                     jobs: list[tuple[list[Any], asyncio.Future[Rows]]]) -> None:
        self.waiting -= sum(len(inputs) for inputs, _ in jobs)
        jobs = [job for job in jobs if not job[1].done()]  # a client that left is skipped
        if not jobs:
            return
        joined = [item for inputs, _ in jobs for item in inputs]
        try:
            rows = await loop.run_in_executor(self.executor, self.predict, joined)
        except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
            for _, done in jobs:
                if not done.done():
                    done.set_exception(exc)
            return
        self.batches += 1
        self.last_requests = len(jobs)
        self.inputs += len(joined)
        self.largest = max(self.largest, len(joined))
        start = 0
        for inputs, done in jobs:
            if not done.done():
                done.set_result(rows[start:start + len(inputs)])
            start += len(inputs)
