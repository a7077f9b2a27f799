"""Decoding OTLP requests without stalling the ingest or letting one client inflate its memory.

Parsing is the expensive part of a request, in time and in memory, and neither is proportional to its
size on the wire: a 49 MB OTLP/JSON request takes over ten seconds of CPU, and a protobuf request of
empty log records takes about 68 times its size in memory to parse (measured; docs/reliability.md).

* Protobuf bodies up to `inline_bytes` (256 KiB) are decoded on the event loop: a few milliseconds at
  worst, and by far the common case (an SDK's batch of 512 spans is about 100 KiB).
* Everything else, all OTLP/JSON included, goes to one of `processes` parse processes. Each decodes one
  request at a time under a hard memory cap (RLIMIT_DATA, `memory_bytes`), so the event loop, and with it
  every other client and /healthz, never waits on a parse, and N concurrent worst-case requests cost at
  most `processes` x `memory_bytes` of parse memory, whatever N is: the others wait their turn holding
  only their wire bytes (counted by the in-flight budget).
* A request that needs more than the cap to decode gets 413 (the parser's allocation fails, or its
  process dies: then only that request fails, and the process is replaced).

`decode` is the pure part (parse, count, serialize or split), the same in the event loop and in a parse
process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from ingest.otlp import SIGNALS, InvalidRequest, Signal, parse_json, parse_protobuf, split

log = logging.getLogger(__name__)


class TooCostly(ValueError):
    """Decoding the request needs more memory than a parse process may use; the client must send it in
    smaller parts (413, not retried)."""


@dataclass(frozen=True)
class Decoded:
    items: int                 # spans, log records or data points in the request
    values: list[bytes] | None  # the Kafka record values; None: forward the protobuf body as it came
    rejected: int = 0          # items that fit no Kafka record even alone


def decode(signal: Signal, body: bytes, encoding: str, max_value_bytes: int) -> Decoded:
    """Parse, count and cut one request into Kafka record values (pure, CPU only)."""
    request = parse_protobuf(signal, body) if encoding == "protobuf" else parse_json(signal, body)
    items = signal.count(request)
    if items == 0:
        return Decoded(0, [])
    if encoding == "protobuf" and len(body) <= max_value_bytes:
        return Decoded(items, None)  # forward the client's bytes untouched
    if request.ByteSize() <= max_value_bytes:
        return Decoded(items, [request.SerializeToString()])
    values, rejected = split(signal, request, max_value_bytes)
    return Decoded(items, values, rejected)


# -- the parse processes ---------------------------------------------------------------------------------

PARSE_NICENESS = 10  # decoding a big request is background work next to answering every other client

# How the parsers report an allocation that failed under the cap: upb (protobuf), orjson, Python itself.
_OUT_OF_MEMORY = ("Arena alloc failed", "Not enough memory", "MemoryError")


def _out_of_memory(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MemoryError) or any(marker in str(seen) for marker in _OUT_OF_MEMORY):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _serve(conn: Connection, memory_bytes: int) -> None:
    """A parse process: one request at a time, under a hard cap on its data memory, at a lower CPU priority
    than the ingest, whose event loop must win the CPU whenever it has something to answer."""
    resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
    os.nice(PARSE_NICENESS)
    trim = _malloc_trim()
    while True:
        try:
            signal_name, encoding, max_value_bytes = conn.recv()
            body = conn.recv_bytes()
        except EOFError:
            return  # the ingest is gone
        _answer(conn, signal_name, body, encoding, max_value_bytes)
        del body
        trim()  # hand the peak of a big request back to the system while idle


def _answer(conn: Connection, signal_name: str, body: bytes, encoding: str, max_value_bytes: int) -> None:
    try:
        decoded = decode(SIGNALS[signal_name], body, encoding, max_value_bytes)
    except Exception as exc:
        if _out_of_memory(exc):
            conn.send(("too_costly", ""))
        elif isinstance(exc, InvalidRequest):
            conn.send(("invalid", str(exc)))
        else:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    else:
        values = decoded.values
        conn.send(("ok", decoded.items, decoded.rejected, None if values is None else len(values)))
        for value in values or ():
            conn.send_bytes(value)


def _malloc_trim() -> Callable[[], object]:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to trim
        return lambda: None
    return lambda: libc.malloc_trim(0)


class _Process:
    """One parse process and the parent's end of its pipe; used by one thread at a time."""

    def __init__(self, context: Any, memory_bytes: int) -> None:
        self._context = context
        self.memory_bytes = memory_bytes
        self._start()

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self.proc = self._context.Process(target=_serve, args=(child, self.memory_bytes), name="maple-parse",
                                          daemon=True)
        self.proc.start()
        child.close()
        self.conn: Connection = parent

    def call(self, signal: Signal, body: bytes, encoding: str, max_value_bytes: int) -> Decoded:
        """Blocking round trip (runs in a thread: pipe I/O releases the GIL)."""
        if not self.proc.is_alive():  # died while idle (killed from outside): not this request's doing
            log.warning("parse process %s had exited (%s); starting a new one", self.proc.pid, self.proc.exitcode)
            self.restart()
        try:
            self.conn.send((signal.name, encoding, max_value_bytes))
            self.conn.send_bytes(body)
            answer = self.conn.recv()
            if answer[0] == "ok":
                _, items, rejected, count = answer
                values = None if count is None else [self.conn.recv_bytes() for _ in range(count)]
                return Decoded(items, values, rejected)
        except (EOFError, OSError) as exc:
            code = self.proc.exitcode
            self.restart()
            raise TooCostly(f"the parse process died decoding this request (exit {code}), most likely past "
                            f"its memory cap of {self.memory_bytes >> 20} MiB (ingest.parse_memory_bytes); "
                            "send it in smaller parts") from exc
        kind, message = answer
        if kind == "too_costly":
            raise TooCostly(f"decoding this request needs more than the parse memory cap of "
                            f"{self.memory_bytes >> 20} MiB (ingest.parse_memory_bytes); send it in smaller parts")
        if kind == "invalid":
            raise InvalidRequest(message)
        raise RuntimeError(f"parse process: {message}")

    def restart(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self._start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()  # the process sees EOF and exits
        self.proc.join(2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2)


class Decoder:
    """Decodes requests inline or in the parse processes (see the module doc). Start it before use."""

    def __init__(self, max_value_bytes: int, *, processes: int, memory_bytes: int, inline_bytes: int) -> None:
        self.max_value_bytes = max_value_bytes
        self.processes = processes
        self.memory_bytes = memory_bytes
        self.inline_bytes = inline_bytes
        self._idle: asyncio.Queue[_Process] | None = None
        self._all: list[_Process] = []
        # One thread per parse process carries its pipe round trips; one per process inflates bodies.
        self._threads = concurrent.futures.ThreadPoolExecutor(processes, thread_name_prefix="maple-parse")
        self._inflaters = concurrent.futures.ThreadPoolExecutor(processes, thread_name_prefix="maple-inflate")

    def start(self) -> None:
        """Spawn the parse processes (fresh interpreters: the ingest's threads are not forked)."""
        context = multiprocessing.get_context("spawn")
        self._all = [_Process(context, self.memory_bytes) for _ in range(self.processes)]
        self._idle = asyncio.Queue()
        for proc in self._all:
            self._idle.put_nowait(proc)

    def stop(self) -> None:
        for proc in self._all:
            proc.stop()
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._inflaters.shutdown(wait=False, cancel_futures=True)

    def inline(self, body: bytes, encoding: str) -> bool:
        return encoding == "protobuf" and len(body) <= self.inline_bytes

    async def decode(self, signal: Signal, body: bytes, encoding: str) -> Decoded:
        if self.inline(body, encoding):
            return decode(signal, body, encoding, self.max_value_bytes)
        assert self._idle is not None, "Decoder.start() was not called"
        proc = await self._idle.get()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._threads, proc.call, signal, body, encoding, self.max_value_bytes)
        finally:
            self._idle.put_nowait(proc)

    async def off_loop(self, work: Any, *args: Any) -> Any:
        """Run CPU work that releases the GIL (decompression) off the event loop, `processes` at a time."""
        return await asyncio.get_running_loop().run_in_executor(self._inflaters, work, *args)
