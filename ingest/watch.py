"""Watch source folders and ingest new or changed files as they appear.

File-system events only say *that* something changed; the incremental scan decides *what* (it is cheap for
unchanged files), so a burst of events becomes one rescan after a short quiet period.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from sqlmodel import select
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from catalog.db import session_for
from catalog.models import Source
from catalog.settings import Library
from ingest.runner import IngestReport, ingest


class _ChangeFlag(FileSystemEventHandler):
    """Remembers when the last relevant event happened."""

    def __init__(self, ignore: Path) -> None:
        self.last_event: float | None = None
        self.ignore = str(ignore)
        self.lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if str(event.src_path).startswith(self.ignore):
            return
        with self.lock:
            self.last_event = time.monotonic()

    def take_if_settled(self, settle: float) -> bool:
        with self.lock:
            if self.last_event is not None and time.monotonic() - self.last_event >= settle:
                self.last_event = None
                return True
            return False


def watch_sources(library: Library, paths: Sequence[str | Path], workers: int | None = None, settle: float = 2.0,
                  report: Callable[[IngestReport], None] | None = None, stop: threading.Event | None = None,
                  poll: float = 0.5) -> None:
    """Ingest once, then again after each settled burst of changes, until `stop` is set (or Ctrl-C)."""
    first = ingest(library, paths, workers=workers)
    if report:
        report(first)
    with session_for(library.database_url) as session:
        folders = [s.path for s in session.exec(select(Source)).all()]
    flag = _ChangeFlag(ignore=library.root)
    observer = Observer()
    for folder in folders:
        observer.schedule(flag, folder, recursive=True)
    observer.start()
    try:
        while not (stop and stop.is_set()):
            if flag.take_if_settled(settle):
                result = ingest(library, [], workers=workers)
                if report:
                    report(result)
            time.sleep(poll)
    finally:
        observer.stop()
        observer.join()
