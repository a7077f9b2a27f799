"""Acknowledge Faust events in source order, each only after the Kafka writes it caused are acknowledged.

Both kinds of agent (the raw-record transforms in app.py and the sampler) process events ahead of Kafka's
acknowledgements, up to a window, and must never ack past an event whose output is not in Kafka: Faust
commits acked offsets, so an ack past a failed write would lose it. On any failure the process stops
(`maple.exits.stop_for_safety`) and a restart resumes from the last commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Release = Callable[[], Awaitable[object]]


class InOrderAcks:
    """A bounded queue of (written, release): `release()` runs once `written` resolved, in put order."""

    def __init__(self, what: str, window: int, fatal: Callable[[str], None]) -> None:
        self.what = what
        self.fatal = fatal
        self._queue: asyncio.Queue[tuple[Awaitable[object], Release, str]] = asyncio.Queue(maxsize=window)
        self._task: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def put(self, written: Awaitable[object], release: Release, where: str) -> None:
        """Queue one event's writes; waits while `window` events are unacknowledged (backpressure)."""
        await self._queue.put((written, release, where))

    async def _run(self) -> None:
        try:
            while True:
                written, release, where = await self._queue.get()
                try:
                    await written
                except Exception as exc:  # the output is not in Kafka: never ack past it
                    self.fatal(f"{self.what} output of {where} not written: {exc}")
                await release()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # without acks nothing commits: a silent hang otherwise
            self.fatal(f"{self.what} acknowledgements failed: {type(exc).__name__}: {exc}")
