"""The worker pattern: results on the main thread, generators, errors, stale generations dropped, cancel."""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QThread

from app.models.workers import Cancelled, WorkerError, WorkerPool


def test_result_progress_and_yields_arrive_on_the_main_thread(qtbot) -> None:
    pool = WorkerPool()
    main = QThread.currentThread()
    seen: dict[str, list] = {"progress": [], "yield": [], "result": [], "threads": []}
    worker_threads = []

    def job(progress, cancelled):
        worker_threads.append(threading.current_thread().name)
        for i in range(3):
            progress(i + 1, 3)
            yield i
        return "done"

    def on_yield(v):
        seen["yield"].append(v)
        seen["threads"].append(QThread.currentThread() is main)

    pool.submit(job, on_progress=lambda d, t: seen["progress"].append((d, t)), on_yield=on_yield,
                on_result=seen["result"].append)  # fmt: skip
    qtbot.waitUntil(lambda: seen["result"] == ["done"], timeout=5000)
    assert seen["yield"] == [0, 1, 2] and all(seen["threads"])
    assert seen["progress"] == [(1, 3), (2, 3), (3, 3)]
    assert worker_threads and worker_threads[0] != threading.main_thread().name
    assert pool.wait(5000)


def test_errors_are_reported_and_stale_results_dropped(qtbot) -> None:
    pool = WorkerPool()
    errors: list[WorkerError] = []
    results: list[str] = []
    release = threading.Event()

    def slow(progress, cancelled):
        release.wait(5)
        return "old"

    pool.submit(slow, channel="c", on_result=results.append)
    pool.submit(lambda p, c: "new", channel="c", on_result=results.append)  # a newer generation
    qtbot.waitUntil(lambda: results == ["new"], timeout=5000)
    release.set()
    assert pool.wait(5000)
    qtbot.wait(20)
    assert results == ["new"]  # the older job finished later, its answer was dropped

    def boom(progress, cancelled):
        raise ValueError("bad pixel data")

    pool.submit(boom, channel="e", on_error=errors.append)
    qtbot.waitUntil(lambda: len(errors) == 1, timeout=5000)
    assert isinstance(errors[0].exception, ValueError) and "bad pixel data" in errors[0].traceback


def test_results_of_an_older_generation_are_dropped_even_when_sent_before_the_cancel(qtbot) -> None:
    """Cancellation cannot help here: the old job has yielded and returned, its reports wait in the event
    queue, when a newer job takes the channel. Only the generation filter keeps them out."""
    pool = WorkerPool()
    seen: list[str] = []

    def old_job(progress, cancelled):
        progress(1, 1)
        yield "old item"
        return "old"

    old = pool.submit(old_job, channel="c", on_yield=seen.append, on_result=seen.append,
                      on_progress=lambda d, t: seen.append("old progress"))  # fmt: skip
    assert old.wait(5)  # finished, never cancelled: its reports are queued, not yet delivered
    assert not old.cancelled() and seen == []
    pool.submit(lambda p, c: "new", channel="c", on_result=seen.append)
    assert old.cancelled()  # too late to matter: it emitted everything before
    qtbot.waitUntil(lambda: "new" in seen, timeout=5000)
    assert pool.wait(5000)
    qtbot.wait(20)
    assert seen == ["new"]


def test_cancel_all_stops_a_cooperative_job(qtbot) -> None:
    pool = WorkerPool()
    steps: list[int] = []

    def long(progress, cancelled):
        for i in range(1000):
            if cancelled():
                raise Cancelled()
            steps.append(i)
            time.sleep(0.005)
        return "never"

    pool.submit(long)
    qtbot.waitUntil(lambda: len(steps) > 3, timeout=5000)
    assert pool.running()
    pool.cancel_all()
    assert pool.wait(5000)
    assert not pool.running() and len(steps) < 1000


def test_a_destroyed_owner_gets_nothing_more(qtbot) -> None:
    """A panel's state deleted while its job runs (the window closed): the job is cancelled and its
    late result is dropped, instead of calling into a deleted object."""
    from PySide6.QtCore import SIGNAL, QObject

    pool = WorkerPool()
    owner, other_owner = QObject(), QObject()
    release = threading.Event()
    got: list[object] = []

    def job(progress, cancelled):
        release.wait(5)
        return "late"

    running = pool.submit(job, channel="panel", on_result=got.append, owner=owner)
    other = pool.submit(lambda p, c: "kept", channel="other", on_result=got.append, owner=other_owner)
    qtbot.waitUntil(
        lambda: got == ["kept"] and not pool.running("other"), timeout=5000
    )  # another owner's job is not affected
    watching = other_owner.receivers(SIGNAL("destroyed(QObject*)"))
    for _ in range(3):
        pool.submit(lambda p, c: None, channel="other", owner=other_owner)
        qtbot.waitUntil(lambda: not pool.running("other"), timeout=5000)
    assert other_owner.receivers(SIGNAL("destroyed(QObject*)")) == watching  # finished jobs leave no watch behind
    owner.deleteLater()
    qtbot.waitUntil(lambda: running.cancelled(), timeout=5000)
    release.set()
    assert pool.wait(5000) and other.done
    qtbot.wait(50)  # let any queued signal arrive
    assert got == ["kept"]


def test_running_until_the_last_report_arrived(qtbot) -> None:
    """A job whose thread is done still counts while its results wait in the event queue: whoever asks
    "is everything in?" (tests, --screenshot) must not look before they arrive."""
    pool = WorkerPool()
    got: list[int] = []

    def job(progress, cancelled):
        yield from range(3)
        return 3

    submitted = pool.submit(job, on_yield=got.append, on_result=got.append)
    assert submitted.wait(5)  # the thread is done; this thread has not handled an event since
    assert pool.running() and got == []
    qtbot.waitUntil(lambda: not pool.running(), timeout=5000)
    assert got == [0, 1, 2, 3]
