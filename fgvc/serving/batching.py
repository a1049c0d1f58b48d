"""Dynamic batching: images of concurrent requests gathered into one forward pass.

:meth:`Batcher.submit` queues one preprocessed image and waits for its row of class probabilities. One worker task
takes the queue's oldest image and waits until it has been queued ``max_wait_ms`` (or ``max_batch`` images are
waiting), then runs the whole batch once on the model thread (a single-thread executor: the event loop never runs a
forward pass, and two passes never race on the model) and answers each waiter with its own row. Images that arrived
while a pass ran have waited already, so they go at once. Bounds are the caller's: :class:`fgvc.serving.app` admits
at most ``--queue`` pending images.
"""
from __future__ import annotations

import asyncio
import collections
from concurrent.futures import Executor
from typing import Callable

import torch
from torch import Tensor

__all__ = ["Batcher"]


class Batcher:
    """``await submit(image 3 x S x S) -> probabilities K`` through batched calls of ``forward(B x 3 x S x S)``."""

    def __init__(self, forward: Callable[[Tensor], Tensor], executor: Executor, max_batch: int = 32,
                 max_wait_ms: float = 5.0, on_batch: Callable[[int], None] | None = None) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch} and {max_wait_ms}")
        self.forward, self.executor = forward, executor
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._pending: collections.deque[tuple[Tensor, asyncio.Future[Tensor], float]] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def __len__(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fgvc-batcher")

    async def submit(self, image: Tensor) -> Tensor:
        """Queue ``image`` and wait for its probabilities (a forward-pass error is raised here, in each waiter)."""
        if self._closing or self._task is None:
            raise RuntimeError("the batcher is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Tensor] = loop.create_future()
        self._pending.append((image, future, loop.time()))
        self._wake.set()
        return await future

    async def run_once(self, images: Tensor) -> Tensor:
        """One forward pass of ``images`` on the model thread, outside the queue (the warm-up)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.forward, images)

    async def _gather(self) -> list[tuple[Tensor, asyncio.Future[Tensor], float]]:
        loop = asyncio.get_running_loop()
        while not self._pending:
            self._wake.clear()
            await self._wake.wait()
        deadline = self._pending[0][2] + self.max_wait  # the oldest image waits at most max_wait in all
        while len(self._pending) < self.max_batch and not self._closing:
            left = deadline - loop.time()
            if left <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                break
        n = min(self.max_batch, len(self._pending))
        return [self._pending.popleft() for _ in range(n)]

    async def _run(self) -> None:
        while True:
            batch = [item for item in await self._gather() if not item[1].done()]  # a waiter may have gone
            if not batch:
                continue
            try:
                images = [image for image, _, _ in batch]  # stacked on the model thread, not the event loop
                probs = await asyncio.get_running_loop().run_in_executor(
                    self.executor, lambda: self.forward(torch.stack(images)))
            except Exception as e:  # a model failure answers every waiter of this batch, and the server goes on
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch))
            for row, (_, future, _) in zip(probs, batch):
                if not future.done():
                    future.set_result(row)

    async def close(self, timeout_s: float = 60.0) -> None:
        """Answer what is queued (for at most ``timeout_s``), then stop the worker."""
        self._closing = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while self._pending and self._task is not None and not self._task.done() and loop.time() < end:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
