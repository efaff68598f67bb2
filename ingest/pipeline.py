"""Run pending `extract` tasks across CPU cores, committing one batch at a time.

A bounded window of jobs is kept in flight in a process pool (decoding is CPU-bound, so processes, not
threads); finished results are written in batches, so a kill loses at most the batch in flight, and the
queue's `running` rows are reclaimed on the next run. If a decoder crashes a worker, the jobs that were in
flight are retried one at a time so the culprit is identified and recorded as failed, not retried forever.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import delete
from sqlmodel import Session

from catalog.models import Frame, Media, Task, utcnow
from catalog.settings import Library
from ingest.extract import ExtractJob, ExtractResult, extract
from ingest.queue import claim, count_by_status, mark_done, mark_failed, requeue
from ingest.stages import EXTRACT_STAGE

ProgressFn = Callable[[int, int, int], None]  # (done, failed, remaining)


@dataclass
class RunSummary:
    """What one run of the queue did."""

    done: int = 0
    failed: int = 0
    crashed: int = 0
    seconds: float = 0.0
    errors: list[dict] = field(default_factory=list)

    @property
    def files_per_second(self) -> float:
        return (self.done + self.failed) / self.seconds if self.seconds > 0 else 0.0


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def new_worker_pool(workers: int) -> ProcessPoolExecutor:
    """Workers fork from a server that has already imported and warmed everything they need."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["ingest.worker_warmup"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def _job_for(task: Task, media: Media, library: Library) -> ExtractJob:
    return ExtractJob(task_id=task.id or 0, media_id=media.id or 0, path=media.path_bytes, kind=media.kind,
                      format=media.format, content_hash=media.content_hash or "", library_root=str(library.root))


def write_result(session: Session, task: Task, result: ExtractResult) -> None:
    """Store one file's extracted data and close its task (no commit: the caller commits the batch)."""
    media = session.get(Media, result.media_id)
    if media is None:
        mark_failed(session, task, "file vanished from the catalog while it was processed")
        return
    for key, value in result.fields.items():
        setattr(media, key, value)
    media.error, media.updated_at = result.error, utcnow()
    session.add(media)
    session.exec(delete(Frame).where(Frame.media_id == media.id))  # type: ignore[call-overload]
    for frame in result.frames:
        session.add(Frame(media_id=media.id, idx=frame.idx, time=frame.time, width=frame.width,
                          height=frame.height, scene_change=frame.scene_change))
    if result.error:
        mark_failed(session, task, result.error)
    else:
        mark_done(session, task)


def run_extract(session: Session, library: Library, workers: int | None = None, batch_size: int = 16,
                limit: int | None = None, progress: ProgressFn | None = None) -> RunSummary:
    """Process pending extract tasks until none are left (or `limit` files were handled)."""
    workers = workers or default_workers()
    summary = RunSummary()
    started = time.monotonic()
    window = max(2, workers * 2)
    in_flight: dict[Future[ExtractResult], Task] = {}
    finished: list[tuple[Task, ExtractResult]] = []
    suspects: set[int] = set()
    claimed_total = 0
    pool = new_worker_pool(workers)

    def remaining() -> int:
        return count_by_status(session, EXTRACT_STAGE).get("pending", 0) + len(in_flight)

    def flush() -> None:
        for task, result in finished:
            write_result(session, task, result)
            if result.error:
                summary.failed += 1
                summary.errors.append({"media_id": result.media_id, "error": result.error})
            else:
                summary.done += 1
        session.commit()
        finished.clear()
        if progress:
            progress(summary.done, summary.failed, remaining())

    try:
        while True:
            solo = bool(suspects)
            capacity = (1 if solo else window) - len(in_flight)
            if limit is not None:
                capacity = min(capacity, limit - claimed_total)
            if capacity > 0:
                tasks = _claim_next(session, capacity, suspects)
                claimed_total += len(tasks)
                for task in tasks:
                    media = session.get(Media, task.media_id)
                    if media is None or media.state != "active":
                        mark_failed(session, task, "file no longer in the library")
                        continue
                    in_flight[pool.submit(extract, _job_for(task, media, library))] = task
                session.commit()
            if not in_flight:
                break
            done_futures, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            try:
                for future in done_futures:
                    task = in_flight[future]
                    result = future.result()
                    del in_flight[future]
                    finished.append((task, result))
                    suspects.discard(task.id or 0)
            except BrokenProcessPool:
                pool = _recover_from_crash(session, pool, workers, in_flight, suspects, solo, summary)
            if len(finished) >= batch_size or not in_flight:
                flush()
        flush()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        summary.seconds = time.monotonic() - started
    return summary


def _claim_next(session: Session, capacity: int, suspects: set[int]) -> list[Task]:
    """Suspects of a worker crash first, one at a time; otherwise the next pending tasks."""
    if suspects:
        task = session.get(Task, next(iter(suspects)))
        if task is not None and task.status == "pending":
            task.status, task.attempts = "running", task.attempts + 1
            session.add(task)
            return [task]
        suspects.discard(next(iter(suspects)))
        return []
    return claim(session, EXTRACT_STAGE, capacity)


def _recover_from_crash(session: Session, pool: ProcessPoolExecutor, workers: int,
                        in_flight: dict[Future[ExtractResult], Task], suspects: set[int], solo: bool,
                        summary: RunSummary) -> ProcessPoolExecutor:
    """A worker died (a decoder crashed): fail the culprit if known, retry the rest one by one."""
    pool.shutdown(wait=False, cancel_futures=True)
    tasks = list(in_flight.values())
    in_flight.clear()
    for task in tasks:
        if solo:
            mark_failed(session, task, "the decoder crashed on this file (worker process died)")
            summary.crashed += 1
            summary.failed += 1
            suspects.discard(task.id or 0)
        else:
            requeue(session, task)
            suspects.add(task.id or 0)
    session.commit()
    return new_worker_pool(workers)
