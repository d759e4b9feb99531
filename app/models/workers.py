"""The one worker pattern of the app: plain functions run in a QThreadPool, results on the main thread.

``WorkerPool.submit(fn, ...)`` runs ``fn(progress, cancelled)`` on a pool thread. ``fn`` may return a
value or be a generator; each yielded item, the progress, the result and any error arrive on the
main thread through queued signals. A worker touches no widget. Every submit on a *channel* raises
that channel's generation and cancels the previous worker there; results of an older generation
are dropped, so a slow answer never overwrites a newer one. ``cancel_all()`` + ``wait()`` on quit.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import partial
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

__all__ = ["Cancelled", "WorkerFn", "WorkerError", "Job", "Worker", "WorkerPool"]

ProgressFn = Callable[[int, int], None]
CancelledFn = Callable[[], bool]
WorkerFn = Callable[[ProgressFn, CancelledFn], Any]


class Cancelled(Exception):
    """Raised inside a worker function to stop early; reported as a cancellation, not an error."""


@dataclass(frozen=True)
class WorkerError:
    """An exception a worker raised, with its formatted traceback (for logs)."""

    exception: BaseException
    traceback: str


class _Signals(QObject):
    progress = Signal(int, int, int)  # generation, done, total
    yielded = Signal(int, object)
    result = Signal(int, object)
    error = Signal(int, object)
    finished = Signal(int, bool)  # generation, cancelled


class Job(QRunnable):
    """One submitted function. ``cancel()`` asks it to stop; ``cancelled()`` is what it polls."""

    def __init__(self, fn: WorkerFn, channel: str, generation: int) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.fn = fn
        self.channel = channel
        self.generation = generation
        self.signals = _Signals()
        self._cancel = threading.Event()
        self._done = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the job has finished; True when it did within the timeout."""
        return self._done.wait(timeout_s)

    def run(self) -> None:  # pool thread
        g = self.generation
        s = self.signals
        was_cancelled = False
        try:
            out = self.fn(lambda done, total: s.progress.emit(g, int(done), int(total)), self.cancelled)
            if isinstance(out, Generator):
                try:
                    while True:
                        if self.cancelled():
                            out.close()
                            raise Cancelled()
                        item = next(out)
                        s.yielded.emit(g, item)
                except StopIteration as stop:
                    out = stop.value
            if self.cancelled():
                raise Cancelled()
            s.result.emit(g, out)
        except Cancelled:
            was_cancelled = True
        except Exception as exc:  # reported on the main thread, never swallowed
            s.error.emit(g, WorkerError(exc, traceback.format_exc()))
        finally:
            self._done.set()
            s.finished.emit(g, was_cancelled)


Worker = Job  # the name the app contract uses


class WorkerPool(QObject):
    """Submit functions to a QThreadPool; stale generations are dropped per channel."""

    def __init__(self, max_threads: int = 2, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, max_threads))
        self._generation: dict[str, int] = {}
        self._jobs: dict[str, Job] = {}
        self._all: list[Job] = []
        self._retired: list[Job] = []

    def generation(self, channel: str) -> int:
        return self._generation.get(channel, 0)

    def running(self, channel: str | None = None) -> bool:
        """True while a job (of ``channel``, or any) is at work or has reports on their way.

        A job counts until its ``finished`` signal has reached the main thread: its thread may be done
        while its last results still wait in the event queue, and whoever asks "is everything in?"
        (a test, ``--screenshot``) must not look before they have arrived.
        """
        return any(channel is None or j.channel == channel for j in self._all)

    def submit(
        self,
        fn: WorkerFn,
        channel: str = "default",
        on_result: Callable[[Any], None] | None = None,
        on_error: Callable[[WorkerError], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        on_yield: Callable[[Any], None] | None = None,
        on_finished: Callable[[bool], None] | None = None,
        owner: QObject | None = None,
    ) -> Job:
        """Run ``fn`` on a pool thread; callbacks run on the main thread for the current generation only.

        ``owner``: the object the callbacks belong to (a panel's state); when it is destroyed the job
        is cancelled and nothing more reaches the callbacks, which would call into a deleted object.
        """
        previous = self._jobs.get(channel)
        if previous is not None:
            previous.cancel()
        gen = self._generation.get(channel, 0) + 1
        self._generation[channel] = gen
        job = Job(fn, channel, gen)

        def current(g: int) -> bool:
            return g == self._generation.get(channel)

        s = job.signals
        if on_progress is not None:
            s.progress.connect(lambda g, d, t: on_progress(d, t) if current(g) else None)
        if on_yield is not None:
            s.yielded.connect(lambda g, item: on_yield(item) if current(g) else None)
        if on_result is not None:
            s.result.connect(lambda g, value: on_result(value) if current(g) else None)
        if on_error is not None:
            s.error.connect(lambda g, err: on_error(err) if current(g) else None)

        watch = owner.destroyed.connect(partial(self._owner_gone, channel, gen)) if owner is not None else None

        def finished(g: int, was_cancelled: bool) -> None:
            if watch is not None:
                QObject.disconnect(watch)  # one finished job must not leave a connection on its owner
            self._retire(channel, g)
            if on_finished is not None and current(g):
                on_finished(was_cancelled)

        s.finished.connect(finished)
        self._purge()
        self._jobs[channel] = job
        self._all.append(job)
        self._pool.start(job)
        return job

    def _owner_gone(self, channel: str, generation: int, *_: object) -> None:
        if self._generation.get(channel) == generation:  # a newer job on the channel is someone else's
            self.cancel(channel)

    def _retire(self, channel: str, generation: int) -> None:
        for job in list(self._all):
            if job.channel == channel and job.generation == generation:
                self._all.remove(job)
                self._retired.append(job)
                if self._jobs.get(channel) is job:
                    del self._jobs[channel]

    def _purge(self) -> None:
        # Finished jobs are released here, on the main thread, long after their thread let go.
        self._retired = [j for j in self._retired if not j.done]

    def cancel(self, channel: str) -> None:
        """Cancel the channel's job and drop whatever it still reports."""
        job = self._jobs.get(channel)
        if job is not None:
            job.cancel()
        self._generation[channel] = self._generation.get(channel, 0) + 1

    def cancel_all(self) -> None:
        for channel in list(self._generation):
            self.cancel(channel)
        for job in self._all:
            job.cancel()

    def wait(self, timeout_ms: int = 30000) -> bool:
        """Join the pool's threads; True when every job finished in time. Joined jobs stop counting as
        running (a shut-down pool has cancelled them: what they still report is dropped anyway)."""
        ok = bool(self._pool.waitForDone(timeout_ms))
        if ok:
            self._retired.clear()
            self._all = [j for j in self._all if not j.done]
            self._jobs = {c: j for c, j in self._jobs.items() if not j.done}
        return ok
