"""One ingest run: register sources, scan them, then work the queue until it is empty.

Holds the library's ingest lock for the whole run, so `running` tasks found at the start belong to a process
that died, and are reclaimed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from sqlmodel import select

from catalog.db import session_for
from catalog.models import Source
from catalog.settings import Library
from ingest.pipeline import ProgressFn, RunSummary, default_workers, run_extract
from ingest.queue import ingest_lock, reclaim_stale
from ingest.scan import ScanReport, add_source, scan_source


@dataclass
class IngestReport:
    scans: list[ScanReport] = field(default_factory=list)
    reclaimed: int = 0
    given_up: int = 0
    run: RunSummary = field(default_factory=RunSummary)

    def as_dict(self) -> dict:
        return {
            "scans": [scan.as_dict() for scan in self.scans],
            "reclaimed": self.reclaimed, "given_up": self.given_up,
            "processed": self.run.done, "failed": self.run.failed, "seconds": round(self.run.seconds, 2),
            "files_per_second": round(self.run.files_per_second, 2),
        }


def ingest(library: Library, paths: Sequence[str | Path] = (), rescan: bool = True, workers: int | None = None,
           batch_size: int = 16, limit: int | None = None, progress: ProgressFn | None = None,
           on_scan: Callable[[ScanReport], None] | None = None) -> IngestReport:
    """Add `paths` as sources (none: all known sources), scan, and process all pending work."""
    library.ensure()
    workers = workers or default_workers()
    report = IngestReport()
    with ingest_lock(library.lock_path):
        with session_for(library.database_url) as session:
            report.reclaimed, report.given_up = reclaim_stale(session)
            sources = [add_source(session, path) for path in paths]
            if not paths:
                sources = list(session.exec(select(Source)).all())
            if rescan:
                for source in {s.id: s for s in sources}.values():
                    scan = scan_source(session, library, source, workers=workers)
                    report.scans.append(scan)
                    if on_scan:
                        on_scan(scan)
            report.run = run_extract(session, library, workers=workers, batch_size=batch_size, limit=limit,
                                     progress=progress)
    return report
