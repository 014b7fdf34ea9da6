"""Group commit of decisions on the server's event loop.

On a database store every decision is a durable write; one transaction (and one fsync) each
caps a server at a few thousand decisions/s, most of it spent opening and committing. The
batcher collects the decide requests that reach the loop together and hands them to
`Meter.decide_many` in one call, so their records commit in one transaction before any of them
is answered: nothing is acknowledged before it is durable, as without batching.

A batch starts on the loop iteration after its first request arrives (`call_soon`), so a lone
request waits for nothing, and requests parsed in the same iteration share one commit. It runs
on the loop's thread, as every other call into the meter does (see ledger.api.app).
"""

from __future__ import annotations

import asyncio

from ledger.metering import DecideRequest, Decision, Meter

MAX_BATCH = 512
"""Requests per transaction at most: bounds how long one batch holds the loop."""


class DecisionBatcher:
    def __init__(self, meter: Meter, *, max_batch: int = MAX_BATCH) -> None:
        self._meter = meter
        self._max = max_batch
        self._waiting: list[tuple[DecideRequest, asyncio.Future[Decision]]] = []
        self._scheduled = False

    async def decide(self, request: DecideRequest) -> Decision:
        """The decision `Meter.decide` would give (or the error it would raise), once the
        batch it was decided in is durable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision] = loop.create_future()
        self._waiting.append((request, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        while self._waiting:
            batch, self._waiting = self._waiting[: self._max], self._waiting[self._max :]
            requests = [request for request, _ in batch]
            try:
                results = self._meter.decide_many(requests)
            except Exception as error:  # the batch's up-front read failed: nothing was decided
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue  # its request was cancelled (the client went away)
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
