"""The parse of an import's files in a process of its own, while this process stores the records.

An import parses (Python code reading rows) and stores (inserts into the database). On one core
the two take turns, and each takes about as long as the other (BENCHMARKS.md shows both for the
benchmark files; one interpreter runs Python on one core at a time, so a thread would not help).
:class:`ParseAhead` forks a child process at the start of an import; the child parses every file
of the batch, in order, and streams what each parse yields through a pipe, while this process
stores the records as they arrive. Both run at once, each on a core of its own.

The child inherits the decoded files by ``fork``: only its results cross the pipe, pickled. It
touches no database connection and no lock of this process, and leaves with ``os._exit``, so
nothing of this process (exit handlers, buffered output, connections) runs twice.

The stream gives this process exactly what an in-process parse would (:class:`ParseResult`):

- the items in the order the importer yielded them, each pickled the moment it was yielded (a
  :class:`~glucoshare.ingest.base.Restart` among them, which the storing process applies);
- for each device, its details as they were when its first record was yielded (importers fill in
  a device's model or serial while they read on; an import identifies a device by what it knew at
  its first record, and registers the details at the end);
- at the end of a file, its devices, rejected rows and notes, and how many records fell in a
  skipped or repeated daylight-saving hour;
- an error the importer raised (an :class:`~glucoshare.errors.InputError` such as a malformed
  header), at the point the importer raised it.

If the child dies, the import fails with :class:`ParseProcessError` and its transaction rolls
back. Forking is used on Linux only, and only for batches large enough for it to pay: a fork
costs a few milliseconds (``Settings.parse_process_min_chars``).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import io
import os
import pickle
import select
import signal
import struct
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO, Protocol, Self

from glucoshare.errors import InputError, InternalError
from glucoshare.ingest.base import (
    DeviceInfo,
    Importer,
    ParseContext,
    ParsedItem,
    ParsedRecord,
    ParseResult,
    ReadingBlock,
    Restart,
    SourceText,
)

_FRAME_HEADER = struct.Struct("<Q")
_FRAME_WEIGHT = 4096
"""Records per frame (a block counts its rows): small enough for this process to start storing
soon, large enough that the frames' own cost stays small."""
_PIPE_BYTES = 1 << 20
"""The pipe's buffer (Linux lets any process have 1 MiB: about 20,000 readings, pickled)."""
_LEAD_BYTES = 32 << 20
"""How far the child may parse ahead of the storing process, in pickled frames not yet in the pipe
(about 650,000 readings, or 100,000 single records): enough to parse the next file while a large one
is stored, little memory next to the files themselves."""

SILENCE_LIMIT_S = 300.0
"""Longest wait for the child's next frame before it counts as stuck (a file's whole pass before its
first record, on the largest file an import accepts, takes a small part of this)."""

_BEGUN, _ITEMS, _END, _REFUSED, _FAILED = "begun", "items", "end", "refused", "failed"


class ParseProcessError(InternalError):
    """The process parsing an import's files ended before it had sent everything."""


class HourCounts(Protocol):
    """How many records of a parse fell in a skipped or repeated daylight-saving hour."""

    @property
    def skipped_hour_records(self) -> int:
        """Records whose wall time fell in a skipped (spring-forward) hour."""
        ...

    @property
    def repeated_hour_records(self) -> int:
        """Records whose wall time fell in a repeated (fall-back) hour."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class ParseTask:
    """One file to parse: its decoded text, its importer and the other files of its batch."""

    source: SourceText
    importer: Importer
    siblings: tuple[SourceText, ...]


@dataclasses.dataclass(slots=True)
class _Counts:
    skipped_hour_records: int = 0
    repeated_hour_records: int = 0


Parser = Callable[[int], tuple[ParseResult, HourCounts]]
"""Parse the batch's file at an index: its result (records consumed lazily) and its hour counts.

The counts are final once the records are consumed."""


def parse_here(tasks: Sequence[ParseTask], zone: str) -> Parser:
    """Parse each file in this process, when it is asked for (the way without a child)."""

    def parse(index: int) -> tuple[ParseResult, HourCounts]:
        task = tasks[index]
        ctx = ParseContext(zone, task.siblings)
        return task.importer.parse(task.source, ctx), ctx

    return parse


def forking_pays(tasks: Sequence[ParseTask], min_chars: int) -> bool:
    """True when a child should parse ``tasks``: on Linux, for at least ``min_chars`` of text."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    return sum(len(task.source.text) for task in tasks) >= min_chars


class ParseAhead:
    """A forked child parsing a batch's files, in order, ahead of this process storing them.

    Use as a context manager; :meth:`parse` then stands in for :func:`parse_here`'s parser and
    must be called for index 0, 1, ... in order, each file's records consumed before the next. On
    leaving, a child still at work is killed and reaped.
    """

    def __init__(self, tasks: Sequence[ParseTask], zone: str) -> None:
        self.tasks = tasks
        self.zone = zone
        self.pid = 0
        self.pidfd = -1
        self.pipe: BinaryIO | None = None
        self.next_index = 0
        self.in_file = False

    def __enter__(self) -> Self:
        import fcntl  # noqa: PLC0415 - POSIX only; this class runs on Linux only (forking_pays)

        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError):  # Linux lets any process have 1 MiB; less works too
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork in a process with threads; the child runs only the
            # importers' own code, which takes no lock another thread could hold (module docstring).
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its work is checked through the parent
            os.close(read_fd)
            _child_main(self.tasks, self.zone, _FrameWriter(write_fd))
        self.pid = pid
        with contextlib.suppress(AttributeError, OSError):  # Linux 5.3 and later
            self.pidfd = os.pidfd_open(pid)
        os.close(write_fd)
        self.pipe = os.fdopen(read_fd, "rb", buffering=0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop a child still at work, and reap it."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                if self.pidfd >= 0:  # the child itself, even if its number went to another process
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                else:
                    os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        if self.pipe is not None:
            self.pipe.close()
            self.pipe = None

    def _frame(self) -> list[object]:
        """The objects of the next frame from the child; the last is the frame's head."""
        assert self.pipe is not None  # noqa: S101 - inside the context
        try:
            header = _read_exactly(self.pipe, _FRAME_HEADER.size)
            data = None if header is None else _read_exactly(self.pipe, _FRAME_HEADER.unpack(header)[0])
        except TimeoutError:
            self.close()
            msg = (
                f"the process parsing the import's files sent nothing for {SILENCE_LIMIT_S:g} s; "
                "it was stopped"
            )
            raise ParseProcessError(msg) from None
        if data is None:
            raise ParseProcessError(self._ended_early())
        unpickler = pickle.Unpickler(io.BytesIO(data))  # noqa: S301 - bytes from our own child
        objects: list[object] = []
        while True:
            try:
                objects.append(unpickler.load())
            except EOFError:
                return objects

    def _ended_early(self) -> str:
        status = ""
        if self.pid:
            with contextlib.suppress(ChildProcessError):
                _, code = os.waitpid(self.pid, 0)
                self.pid = 0
                if os.WIFSIGNALED(code):
                    status = f" (ended by signal {os.WTERMSIG(code)})"
                elif os.WIFEXITED(code):
                    status = f" (exit status {os.WEXITSTATUS(code)})"
        return f"the process parsing the import's files ended before it had finished{status}"

    def parse(self, index: int) -> tuple[ParseResult, HourCounts]:
        """The child's parse of file ``index``: raise what the importer raised, or its result.

        The files are asked for in order; what is left of the previous file's records is skipped.
        """
        if index != self.next_index:  # pragma: no cover - a caller's mistake
            msg = f"files must be parsed in order: {index} asked for, {self.next_index} next"
            raise ValueError(msg)
        self.next_index += 1
        while self.in_file:  # the previous file's records were not all consumed
            self.in_file = _head(self._frame())[0] == _ITEMS
        head = _head(self._frame())
        _raise_failure(head)
        self.in_file = True
        result = ParseResult(records=iter(()))
        counts = _Counts()
        result.records = self._records(result, counts)
        return result, counts

    def _records(self, result: ParseResult, counts: _Counts) -> Iterator[ParsedItem]:
        while True:
            frame = self._frame()
            head = _head(frame)
            last = head[0] != _ITEMS
            if last:
                self.in_file = False  # this file's frames are all read, even if its records are not
            devices = result.devices
            for item in frame[:-1]:
                kind = type(item)
                if kind is ReadingBlock or kind is ParsedRecord or kind is Restart:
                    yield item  # type: ignore[misc]
                elif kind is _DeviceAt:
                    devices[item.key] = item.info  # type: ignore[attr-defined]
            if not last:
                continue
            _raise_failure(head)
            _, final_devices, rejected, primary, notes, skipped, repeated = head
            result.devices = final_devices
            result.rejected = rejected
            result.primary_device = primary
            result.notes = notes
            counts.skipped_hour_records, counts.repeated_hour_records = skipped, repeated
            return


@dataclasses.dataclass(frozen=True, slots=True)
class _DeviceAt:
    """A device's details as they were when its first record was yielded."""

    key: str
    info: DeviceInfo


def _head(frame: list[object]) -> tuple[Any, ...]:
    head = frame[-1]
    if type(head) is not tuple:  # pragma: no cover - the child's protocol
        msg = "the parse process sent a frame without a head"
        raise ParseProcessError(msg)
    return head


def _raise_failure(head: tuple[Any, ...]) -> None:
    """Raise the error a head reports: the importer's input error, or a failure by its type."""
    if head[0] == _REFUSED:
        raise head[1]
    if head[0] == _FAILED:
        msg = f"parsing failed in the parse process ({head[1]})"
        raise ParseProcessError(msg)


def _read_exactly(pipe: BinaryIO, size: int) -> bytes | None:
    """``size`` bytes from ``pipe``, or ``None`` at its end; :class:`TimeoutError` after a silence.

    The child sends a frame at least every few thousand records: a silence of
    :data:`SILENCE_LIMIT_S` means it is stuck.
    """
    chunks: list[bytes] = []
    left = size
    while left:
        ready, _, _ = select.select([pipe], [], [], SILENCE_LIMIT_S)
        if not ready:
            raise TimeoutError
        chunk = pipe.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class _FrameWriter:
    """The child's side: objects pickled into frames, each sent whole after its size.

    A frame goes straight into the pipe when the pipe takes it (the pipe is non-blocking). One the
    pipe cannot take yet waits, and a thread of the child writes the waiting frames as the pipe
    empties, while the parse goes on: the child parses the next file while the storing process is
    still busy with a large one. Up to :data:`_LEAD_BYTES` of frames wait; beyond, the parse waits.
    (Every frame through the thread would reach the storing process later: the thread waits for the
    interpreter lock, which the parse holds, for up to the switch interval, 5 ms.)
    """

    def __init__(self, write_fd: int) -> None:
        self.pipe = write_fd
        os.set_blocking(write_fd, False)
        self._waiting: collections.deque[io.BytesIO] = collections.deque()
        self._waiting_bytes = 0
        self._offset = 0  # bytes of the first waiting frame already in the pipe
        self._closed = False
        self._changed = threading.Condition()
        self._sender = threading.Thread(target=self._send_waiting, name="parse-frames", daemon=True)
        self._sender.start()
        self._new_frame()

    def add(self, obj: object) -> None:
        """Pickle ``obj`` into the frame being made."""
        self.pickler.dump(obj)

    def send(self, head: tuple[object, ...]) -> None:
        """End the frame with its ``head`` and send it, or leave it waiting for the pipe."""
        self.pickler.dump(head)
        frame = self.buffer
        self._new_frame()
        size = frame.getbuffer().nbytes
        frame.seek(0)
        frame.write(_FRAME_HEADER.pack(size - _FRAME_HEADER.size))
        with self._changed:
            offset = 0
            if not self._waiting:  # nothing before it: into the pipe as far as it goes
                with frame.getbuffer() as data, contextlib.suppress(BlockingIOError):
                    offset = os.write(self.pipe, data)
                if offset == size:
                    return
            while self._waiting_bytes >= _LEAD_BYTES:
                self._changed.wait()
            if not self._waiting:
                self._offset = offset
            self._waiting.append(frame)
            self._waiting_bytes += size
            self._changed.notify_all()

    def _new_frame(self) -> None:
        self.buffer = io.BytesIO()
        self.buffer.write(bytes(_FRAME_HEADER.size))  # room for the frame's size
        self.pickler = pickle.Pickler(self.buffer, protocol=pickle.HIGHEST_PROTOCOL)

    def _send_waiting(self) -> None:  # pragma: no cover - runs in the child
        """The sending thread: write the waiting frames in order, until closed and all are sent."""
        try:
            while True:
                with self._changed:
                    while not self._waiting and not self._closed:
                        self._changed.wait()
                    if not self._waiting:
                        return
                    frame, offset = self._waiting[0], self._offset
                with frame.getbuffer() as data:
                    size = len(data)
                    while offset < size:
                        select.select([], [self.pipe], [])
                        with contextlib.suppress(BlockingIOError):
                            offset += os.write(self.pipe, data[offset:])
                with self._changed:
                    self._waiting.popleft()
                    self._waiting_bytes -= size
                    self._offset = 0
                    self._changed.notify_all()
        except OSError:  # the storing process stopped reading (it failed, or stopped this child)
            os._exit(1)

    def close(self) -> None:
        """Send what waits, then tell the storing process that nothing more comes."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._sender.join()
        os.close(self.pipe)


def _child_main(tasks: Sequence[ParseTask], zone: str, writer: _FrameWriter) -> None:  # pragma: no cover
    """The child: parse every file, stream the results, and leave without running any exit code."""
    status = 1
    try:
        gc.disable()  # as the import does; and a collection would copy every page it touches
        for number in (signal.SIGINT, signal.SIGTERM):  # not the parent's handlers (a server's)
            with contextlib.suppress(ValueError):  # only if the fork was made off the main thread
                signal.signal(number, signal.SIG_DFL)
        for task in tasks:
            _parse_one(task, zone, writer)
        writer.close()
        status = 0
    finally:
        os._exit(status)


def _parse_one(task: ParseTask, zone: str, writer: _FrameWriter) -> None:  # pragma: no cover
    """Stream one file's parse: its start (or refusal), its items, and its end (or refusal).

    Each item is pickled the moment the importer yields it, so that later changes the importer
    makes to its objects do not reach what this process stores.
    """
    ctx = ParseContext(zone, task.siblings)
    try:
        result = task.importer.parse(task.source, ctx)
    except Exception as exc:  # noqa: BLE001 - every failure is sent; the storing process decides
        writer.send(_failure(exc))
        return
    writer.send((_BEGUN,))
    seen: set[str] = set()
    devices = result.devices
    add = writer.add
    weight = 0
    try:
        for item in result.records:
            if isinstance(item, Restart):
                add(item)
                continue
            key = item.device
            if key not in seen:
                seen.add(key)
                info = devices.get(key)
                if info is not None:
                    add(_DeviceAt(key, _copy_device(info)))
            if type(item) is not ReadingBlock:
                add(item)
                weight += 1
            elif len(item) <= _FRAME_WEIGHT:
                add(item)
                weight += len(item)
            else:  # a whole file's block: sent and stored a frame at a time (memory; an earlier start)
                for piece in _pieces(item, _FRAME_WEIGHT):
                    add(piece)
                    writer.send((_ITEMS,))
                weight = 0
                continue
            if weight >= _FRAME_WEIGHT:
                writer.send((_ITEMS,))
                weight = 0
    except Exception as exc:  # noqa: BLE001 - sent after the items before it, as it happened
        writer.send(_failure(exc))
        return
    writer.send(
        (
            _END,
            result.devices,
            result.rejected,
            result.primary_device,
            result.notes,
            ctx.skipped_hour_records,
            ctx.repeated_hour_records,
        )
    )


def _pieces(block: ReadingBlock, size: int) -> Iterator[ReadingBlock]:
    """``block`` as consecutive blocks of at most ``size`` rows (storing them stores the block)."""
    for start in range(0, len(block), size):
        yield block.kept(slice(start, start + size))


def _copy_device(info: DeviceInfo) -> DeviceInfo:
    """A copy of a device's details as they are now, an object of its own.

    Not ``info`` itself: a frame's pickler remembers the objects it has pickled, and would send a
    later mention of the same object (the file's devices at its end) as its state at the first.
    """
    return dataclasses.replace(info, identifiers=set(info.identifiers))


def _failure(exc: Exception) -> tuple[str, object]:
    """What the child sends for an exception: an input error itself, anything else by its type."""
    if isinstance(exc, InputError):
        try:
            pickle.loads(pickle.dumps(exc))  # noqa: S301 - its own bytes, just made
        except Exception:  # noqa: BLE001 - an error that does not survive pickling: by its type
            return (_FAILED, type(exc).__name__)
        return (_REFUSED, exc)
    return (_FAILED, type(exc).__name__)
