"""Stage tasks stored in the catalog: claim, finish, fail with a reason, reclaim after a crash.

Every stage of every file is a Task row, so the catalog itself is the checkpoint: a process killed at any
moment leaves tasks `running`, and the next run (holding the ingest lock) puts them back to `pending`.
A file that keeps killing the process is given up after MAX_ATTEMPTS with a reason instead of looping.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from sqlalchemy import func, update
from sqlmodel import Session, select

from catalog.models import Task, utcnow

MAX_ATTEMPTS = 3
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


class IngestBusy(RuntimeError):
    """Another process is ingesting into this library right now."""


@contextmanager
def ingest_lock(lock_path: Path) -> Iterator[None]:
    """Hold the library's ingest lock; only its holder may reclaim `running` tasks."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        raise IngestBusy(f"another ingest is running on this library (pid {owner}); wait for it or stop it")
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def enqueue(session: Session, media_id: int, stages: Iterable[str]) -> None:
    """Add pending tasks for stages the file does not have yet (idempotent)."""
    have = set(session.exec(select(Task.stage).where(Task.media_id == media_id)).all())
    for stage in stages:
        if stage not in have:
            session.add(Task(media_id=media_id, stage=stage))


def reset(session: Session, media_id: int, stages: Iterable[str] | None = None) -> None:
    """Make a file's tasks pending again (its content changed, or the user asked for a retry)."""
    query = update(Task).where(Task.media_id == media_id)
    if stages is not None:
        query = query.where(Task.stage.in_(list(stages)))  # type: ignore[attr-defined]
    session.exec(query.values(status=PENDING, attempts=0, error=None, updated_at=utcnow()))  # type: ignore[call-overload]


def reclaim_stale(session: Session) -> tuple[int, int]:
    """Tasks left `running` by a dead process: retry them, or give up on ones that crashed us too often."""
    stale = session.exec(select(Task).where(Task.status == RUNNING)).all()
    retried = given_up = 0
    for task in stale:
        if task.attempts >= MAX_ATTEMPTS:
            task.status = FAILED
            task.error = (f"gave up after {task.attempts} attempts: the process crashed or was killed "
                          "while working on this file")
            given_up += 1
        else:
            task.status = PENDING
            retried += 1
        task.updated_at = utcnow()
        session.add(task)
    session.commit()
    return retried, given_up


def claim(session: Session, stage: str, limit: int, exclude: Sequence[int] = ()) -> list[Task]:
    """Mark up to `limit` pending tasks of a stage as running (one transaction) and return them."""
    query = select(Task).where(Task.stage == stage, Task.status == PENDING)
    if exclude:
        query = query.where(Task.id.not_in(list(exclude)))  # type: ignore[union-attr]
    tasks = session.exec(query.order_by(Task.id).limit(limit)).all()
    return _start(session, tasks)


def claim_media(session: Session, stages: Sequence[str], limit: int) -> list[Task]:
    """Claim every pending task of `stages` for the next `limit` files that have any (one transaction).

    Analyzers work file by file, so one decode of a file's images serves all of its pending stages.
    """
    wanted = list(stages)
    media_ids = session.exec(select(Task.media_id).where(Task.stage.in_(wanted), Task.status == PENDING)  # type: ignore[attr-defined]
                             .group_by(Task.media_id).order_by(Task.media_id).limit(limit)).all()
    if not media_ids:
        return []
    tasks = session.exec(select(Task).where(Task.stage.in_(wanted), Task.status == PENDING,  # type: ignore[attr-defined]
                                            Task.media_id.in_(list(media_ids)))  # type: ignore[attr-defined]
                         .order_by(Task.media_id, Task.id)).all()
    return _start(session, tasks)


def _start(session: Session, tasks: Sequence[Task]) -> list[Task]:
    """Mark claimed tasks running, counting the attempt, in one commit."""
    now = utcnow()
    for task in tasks:
        task.status = RUNNING
        task.attempts += 1
        task.updated_at = now
        session.add(task)
    session.commit()
    return list(tasks)


def mark_done(session: Session, task: Task) -> None:
    task.status, task.error, task.updated_at = DONE, None, utcnow()
    session.add(task)


def mark_failed(session: Session, task: Task, error: str) -> None:
    task.status, task.error, task.updated_at = FAILED, error[:2000], utcnow()
    session.add(task)


def requeue(session: Session, task: Task) -> None:
    """Put a task back (its worker died with others); attempts already counted."""
    task.status, task.updated_at = PENDING, utcnow()
    session.add(task)


def count_by_status(session: Session, stage: str | None = None) -> dict[str, int]:
    query = select(Task.status, func.count()).group_by(Task.status)
    if stage:
        query = query.where(Task.stage == stage)
    return {status: n for status, n in session.exec(query).all()}


def retry_failed(session: Session, stage: str | None = None) -> int:
    """Give failed tasks another chance (e.g. after installing a missing codec)."""
    query = update(Task).where(Task.status == FAILED)
    if stage:
        query = query.where(Task.stage == stage)
    result = session.exec(query.values(status=PENDING, attempts=0, error=None))  # type: ignore[call-overload]
    session.commit()
    return int(result.rowcount or 0)
