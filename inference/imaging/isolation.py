"""Decode untrusted pixel data in worker processes, so a crashing decoder costs one file, not the run.

Native decoders (Rust, C, C++) fail in ways Python cannot catch: pylibjpeg-rle panics with a
``PanicException`` that derives from ``BaseException`` (every ``except Exception`` lets it through),
a C decoder may segfault or abort, a crafted header may make it allocate gigabytes. A
:class:`DecodePool` runs :func:`inference.imaging.decode.load_image` in worker processes, one file
at a time per worker, and turns each of those failures into that file's :class:`ImageReadError`
with a reason; the dead worker is replaced and the next file goes on::

    with DecodePool(workers=2) as pool:
        image = pool.load(record)                     # LoadedImage, or raises ImageReadError
        for source, result in pool.map(records):      # in order, streaming; errors as values
            ...

- *panic* (any ``BaseException`` in the decoder): "the decoder panicked (PanicException: ...)";
- *signal* (segfault, abort, kill): "the decoder crashed (signal 11, SIGSEGV)";
- *out of memory*: each worker's address space is capped (``RLIMIT_AS``) at its idle footprint plus
  ``memory_limit_mb``; an allocation past it fails and the file gets "out of memory: over the
  4096 MB decode limit; raise it with MAMMO_DECODE_MEMORY_MB or --decode-memory-mb". The cap is
  enforced on Linux only: macOS accepts ``RLIMIT_AS`` but does not enforce it and Windows has no
  such limit, so there a decode is bounded by :mod:`inference.imaging.limits` (checked from the
  header before decoding) and by the time limit alone;
- *timeout*: a decode running past ``timeout_s`` is killed: "decoding took over 120 s (the decode
  time limit; raise it with MAMMO_DECODE_TIMEOUT_S or --decode-timeout)".

Workers are started with the ``spawn`` context (``forkserver`` may be asked for on POSIX): the app
runs Qt threads, and ``fork`` would copy their locks. Workers start lazily (about a second each:
they import numpy and pydicom), are reused across images, and a worker whose decode ran out of
memory is replaced after it reports (its heap may stay fragmented). The pool is thread-safe: several
threads may call :meth:`DecodePool.load` at once, each on its own worker. A worker ignores SIGINT
(the parent handles Ctrl+C and closes the pool) and sends its stderr to the null device, so a
decoder's panic message and backtrace never reach the terminal: the reason carries the message.

The decode function is a parameter (default ``load_image``): it must be picklable (a module-level
function) and take the source; tests inject failing ones through it.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from inference import errors
from inference.errors import ImageReadError, MammoReviewError
from inference.imaging import transfer
from inference.imaging.decode import LoadedImage, load_image

__all__ = [
    "DecodePool",
    "Source",
    "DecodeFunction",
    "MEMORY_ENV",
    "TIMEOUT_ENV",
    "WORKERS_ENV",
    "MEMORY_OPTION",
    "TIMEOUT_OPTION",
    "DEFAULT_MEMORY_LIMIT_MB",
    "DEFAULT_TIMEOUT_S",
    "settings_from_env",
]

#: What a worker is sent: a record or a path for ``load_image``; any picklable object with a ``path``
#: attribute for another decode function (:class:`inference.model.pipeline.Request`).
Source = Any
DecodeFunction = Callable[[Any], Any]
S = TypeVar("S")
R = TypeVar("R")

#: Environment variables and the CLI options (wired by the CLI) that raise the limits.
MEMORY_ENV, MEMORY_OPTION = "MAMMO_DECODE_MEMORY_MB", "--decode-memory-mb"
TIMEOUT_ENV, TIMEOUT_OPTION = "MAMMO_DECODE_TIMEOUT_S", "--decode-timeout"
WORKERS_ENV = "MAMMO_DECODE_WORKERS"
# The default fits a decode at the default pixel limit (limits.py, 120 Mpx): an uncompressed 16-bit
# 100 Mpx image decoded by load_image needed between 2048 and 2560 MB, 120 Mpx fitted in 4096 MB.
DEFAULT_MEMORY_LIMIT_MB = 4096
DEFAULT_TIMEOUT_S = 120.0

_OK, _ERROR, _OOM = "ok", "error", "oom"
_START_TIMEOUT_S = 300.0  # a worker's start (imports) is not counted in the decode time limit


def settings_from_env(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for :class:`DecodePool` from the environment (absent or empty variables: defaults).

    ``0`` for the memory or the time limit means none. Raises ValueError naming a malformed variable.
    """
    env = dict(os.environ) if env is None else env
    out: dict[str, Any] = {}
    for name, key, kind in ((MEMORY_ENV, "memory_limit_mb", int), (TIMEOUT_ENV, "timeout_s", float),
                            (WORKERS_ENV, "workers", int)):
        text = env.get(name, "").strip()
        if not text:
            continue
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{name}={text!r} is not a number") from None
        if value < 0 or (key == "workers" and value == 0):
            raise ValueError(f"{name}={text!r} is out of range")
        out[key] = value or None
    return out


# --------------------------------------------------------------------------- the worker process
def _address_space_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _cap_memory(limit_mb: int | None) -> None:
    """RLIMIT_AS = the worker's idle address space + ``limit_mb`` (Linux; elsewhere nothing)."""
    if limit_mb is None:
        return
    try:
        import resource
    except ImportError:  # Windows
        return
    base = _address_space_bytes()
    if base is None:  # not Linux: RLIMIT_AS is not enforced there
        return
    cap = base + limit_mb * (1 << 20)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _ran_out_of_memory(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MemoryError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _outcome(decode: DecodeFunction, source: Source) -> tuple[Any, ...]:
    try:
        return (_OK, decode(source))
    except MemoryError:
        return (_OOM,)
    except MammoReviewError as exc:
        if _ran_out_of_memory(exc):
            return (_OOM,)
        return (_ERROR, type(exc).__name__, exc.reason)
    except Exception as exc:  # a decoder of untrusted data raises any type: that file's error
        return (_ERROR, "ImageReadError", f"unexpected error in the decoder ({type(exc).__name__}: {exc})")
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: B036 - pyo3's PanicException derives from BaseException
        return (_ERROR, "ImageReadError", f"the decoder panicked ({type(exc).__name__}: {exc})")


def _worker_main(
    conn: Connection, decode: DecodeFunction, memory_limit_mb: int | None, quiet: bool, owner: str
) -> None:
    """A worker's loop: receive a source, send back its outcome; ``None`` or a closed pipe ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if quiet:  # nothing of a worker reaches the terminal; a warning (or -W error) never fails a file
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        warnings.simplefilter("ignore")
    _cap_memory(memory_limit_mb)
    conn.send(("ready",))
    while True:
        try:
            source = conn.recv()
        except (EOFError, OSError):
            return
        if source is None:
            return
        result = _outcome(decode, source)
        try:
            conn.send(transfer.pack(result, owner) if result[0] == _OK else result)  # large arrays: shared memory
        except MemoryError:  # the image decoded, but pickling it went over the cap
            conn.send((_OOM,))
        if result[0] == _OOM:
            return  # a fresh worker for the next file


# --------------------------------------------------------------------------- the parent side
def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def _path_of(source: Source) -> Path:
    path = getattr(source, "path", source)
    return path if isinstance(path, Path) else Path(str(path))


def _error(kind: str, reason: str, path: Path) -> ImageReadError:
    cls = getattr(errors, kind, ImageReadError)
    if not (isinstance(cls, type) and issubclass(cls, ImageReadError)):
        cls = ImageReadError
    return cls(reason, path)


class _Worker:
    def __init__(
        self, ctx: Any, decode: DecodeFunction, memory_limit_mb: int | None, quiet: bool, owner: str
    ) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(child, decode, memory_limit_mb, quiet, owner), daemon=True, name="mammo-decode"
        )
        self.process.start()
        child.close()
        self.ready = False
        self.ready_at = 0.0
        self._stopping = threading.Lock()
        self._stopped = False

    def alive(self) -> bool:
        return bool(self.process.is_alive())

    def stop(self, kill: bool = False) -> None:
        """End the process and close the pipe, once: the pool's close and the thread that was waiting
        on this worker's decode may both stop it (closing the pipe twice is EBADF)."""
        with self._stopping:
            if self._stopped:
                return
            self._stopped = True
            self._stop(kill)

    def _stop(self, kill: bool) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.process.join(2.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class DecodePool(Generic[R]):
    """Worker processes that decode images; see the module's docstring.

    ``workers``: how many processes at most (default: the machine's cores); ``memory_limit_mb``: the
    memory a decode may take beyond a worker's idle footprint (``None``: no cap); ``timeout_s``: the
    time one decode may take (``None``: no limit; it includes a worker's start the first time);
    ``decode``: the function run in the worker (default ``load_image``; any picklable function of one
    source, whose result is picklable: the pool is generic in it, so other work on untrusted pixel
    data, such as a de-identification that decodes and blanks, runs isolated the same way);
    ``context``: ``"spawn"`` or ``"forkserver"``.
    """

    @overload
    def __init__(
        self: DecodePool[LoadedImage],
        workers: int | None = None,
        memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        *,
        context: str = "spawn",
        quiet: bool = True,
    ) -> None: ...

    @overload
    def __init__(
        self,
        workers: int | None = None,
        memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        *,
        decode: Callable[[Source], R],
        context: str = "spawn",
        quiet: bool = True,
    ) -> None: ...

    def __init__(
        self,
        workers: int | None = None,
        memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        *,
        decode: DecodeFunction = load_image,
        context: str = "spawn",
        quiet: bool = True,
    ) -> None:
        if context not in ("spawn", "forkserver"):
            raise ValueError(f"context {context!r}: only 'spawn' or 'forkserver' (no fork beside Qt threads)")
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1")
        if memory_limit_mb is not None and memory_limit_mb < 1:
            raise ValueError("memory_limit_mb must be at least 1 (None: no cap)")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("timeout_s must be positive (None: no limit)")
        self.workers = workers or os.cpu_count() or 1
        self.memory_limit_mb = memory_limit_mb
        self.timeout_s = timeout_s
        self._decode = decode
        self._quiet = quiet
        self._ctx = multiprocessing.get_context(context)
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()  # None: closed, wake up
        self._lock = threading.Lock()
        self._started = 0
        self._closed = False
        self._all: set[_Worker] = set()
        #: how many workers were replaced after a crash, an out-of-memory or a timeout
        self.replaced = 0
        self._owner = transfer.new_owner()  # names this pool's shared-memory files
        transfer.sweep()  # files left by pools of processes that are gone

    # ------------------------------------------------------------------ public
    def start(self) -> int:
        """Start every worker not started yet, now (a spawned worker takes about a second to import its
        modules: an app calls this when idle, so the first image opened does not wait for it). Returns
        how many were started."""
        started = 0
        with self._lock:
            if self._closed:
                raise RuntimeError("the decode pool is closed")
            while self._started < self.workers:
                self._idle.put(self._new_worker())
                started += 1
        return started

    def load(self, source: Source) -> R:
        """Decode one image in a worker; raises ImageReadError (or a subclass) with the reason."""
        worker = self._checkout()
        assert worker is not None  # a blocking checkout always returns one
        self._send(worker, source)
        result = self._finish(worker, source, time.monotonic())
        if isinstance(result, ImageReadError):
            raise result
        return result

    def map(self, sources: Iterable[S]) -> Iterator[tuple[S, R | ImageReadError]]:
        """(source, image or its error) for every source, in order, decoding up to ``workers`` at once.

        Lazy: a source is read from ``sources`` only when a worker is free for it, so a generator of
        records streams; a worker freed by an answer takes the next source before the answer is
        handed over, so every worker stays busy while the caller works on it; at most ``workers``
        decoded images wait in memory besides the one handed over.
        """
        pending: deque[tuple[S, _Worker, float]] = deque()
        it = iter(sources)
        exhausted = False

        def refill() -> None:
            nonlocal exhausted
            while not exhausted and len(pending) < self.workers:
                worker = self._checkout(block=not pending)
                if worker is None:
                    return
                try:
                    source = next(it)
                except StopIteration:
                    self._checkin(worker)
                    exhausted = True
                    return
                self._send(worker, source)
                pending.append((source, worker, time.monotonic()))

        try:
            refill()
            while pending:
                source, worker, sent = pending.popleft()
                result = self._finish(worker, source, sent)
                refill()
                yield source, result
        finally:  # the caller stopped early: the decodes still running are abandoned with their workers
            for _, worker, _ in pending:
                self._retire(worker, kill=True)

    def close(self) -> None:
        """Stop every worker (a running decode is killed). The pool cannot be used afterwards."""
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        for _ in range(self.workers):  # threads waiting for a worker wake up and see the pool closed
            self._idle.put(None)
        for worker in workers:
            worker.stop(kill=not worker.ready)
        transfer.sweep(self._owner)  # a worker killed between writing its result and sending it

    def __enter__(self) -> DecodePool[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ workers
    def _checkout(self, block: bool = True) -> _Worker | None:
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the decode pool is closed")
                try:
                    worker = self._idle.get_nowait()
                except queue.Empty:
                    worker = None
                    if self._started < self.workers:
                        worker = self._new_worker()
            if worker is None:
                if not block:
                    return None
                worker = self._idle.get()
                if worker is None:
                    raise RuntimeError("the decode pool is closed")
            if worker.alive():
                return worker
            self._retire(worker, kill=True)  # died while idle: a fresh one

    def _new_worker(self) -> _Worker:
        """A started worker process, counted (the caller holds the lock)."""
        self._started += 1
        worker = _Worker(self._ctx, self._decode, self.memory_limit_mb, self._quiet, self._owner)
        self._all.add(worker)
        return worker

    def _checkin(self, worker: _Worker) -> None:
        with self._lock:
            closed = self._closed
        if closed:
            worker.stop()
        else:
            self._idle.put(worker)

    def _retire(self, worker: _Worker, kill: bool) -> None:
        with self._lock:
            self._all.discard(worker)
            self._started -= 1
        worker.stop(kill=kill)

    def _send(self, worker: _Worker, source: Source) -> None:
        try:
            worker.conn.send(source)
        except OSError:  # died between the check and the send: _finish sees the exit code
            pass

    def _finish(self, worker: _Worker, source: Source, sent: float) -> R | ImageReadError:
        """Wait for the worker's answer to ``source`` (sent at ``sent``, monotonic); the worker goes
        back idle, or is replaced. The time limit counts from the later of the send and the worker's start."""
        path = _path_of(source)
        while True:
            if not worker.ready:
                remaining: float | None = _START_TIMEOUT_S
            elif self.timeout_s is None:
                remaining = None
            else:
                remaining = max(0.0, max(sent, worker.ready_at) + self.timeout_s - time.monotonic())
            ready = wait([worker.conn, worker.process.sentinel], timeout=remaining)
            if worker.conn in ready:
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    message = None
                if message == ("ready",):
                    worker.ready, worker.ready_at = True, time.monotonic()
                    continue
                if message is not None:
                    return self._answer(worker, message, path)
            if not ready:
                self._retire(worker, kill=True)
                self.replaced += 1
                if not worker.ready:
                    return ImageReadError(f"the decode worker did not start within {_START_TIMEOUT_S:g} s", path)
                return ImageReadError(
                    f"decoding took over {self.timeout_s:g} s (the decode time limit; raise it with "
                    f"{TIMEOUT_ENV} or {TIMEOUT_OPTION})",
                    path,
                )
            # the process ended without an answer
            worker.process.join(5.0)
            code = worker.process.exitcode
            self._retire(worker, kill=True)
            self.replaced += 1
            if code is not None and code < 0:
                reason = f"the decoder crashed (signal {-code}, {_signal_name(-code)})"
                if -code == signal.SIGABRT and self.memory_limit_mb is not None:  # Rust, C++: abort on OOM
                    reason += (f"; a decoder aborts when an allocation fails: if the image is large, raise the "
                               f"{self.memory_limit_mb} MB decode limit with {MEMORY_ENV} or {MEMORY_OPTION}")
                return ImageReadError(reason, path)
            return ImageReadError(f"the decode worker ended without an answer (exit status {code})", path)

    def _answer(self, worker: _Worker, message: tuple[Any, ...], path: Path) -> R | ImageReadError:
        kind = message[0]
        if kind == transfer.MAPPED:
            try:
                message = (_OK, transfer.unpack(message, self._owner, worker.process.pid))
            except Exception as exc:  # a file gone, a name not its own, a pickle it cannot read: that file's error
                self._checkin(worker)
                return ImageReadError(f"the decoded image could not be taken from shared memory ({exc})", path)
            kind = _OK
        if kind == _OK:
            self._checkin(worker)
            result: R = message[1]
            return result
        if kind == _OOM:
            self._retire(worker, kill=False)
            self.replaced += 1
            if self.memory_limit_mb is None:
                return ImageReadError("out of memory: the machine's memory ran out while decoding", path)
            return ImageReadError(
                f"out of memory: over the {self.memory_limit_mb} MB decode limit; raise it with "
                f"{MEMORY_ENV} or {MEMORY_OPTION}",
                path,
            )
        self._checkin(worker)
        return _error(str(message[1]), str(message[2]), path)
