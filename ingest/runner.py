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
    analyzers: dict[str, RunSummary] = field(default_factory=dict)
    skipped_analyzers: dict[str, str] = field(default_factory=dict)
    people: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "scans": [scan.as_dict() for scan in self.scans],
            "reclaimed": self.reclaimed, "given_up": self.given_up,
            "processed": self.run.done, "failed": self.run.failed, "seconds": round(self.run.seconds, 2),
            "files_per_second": round(self.run.files_per_second, 2),
            "analyzers": {name: {"done": r.done, "failed": r.failed, "seconds": round(r.seconds, 2)}
                          for name, r in self.analyzers.items()},
            "skipped_analyzers": self.skipped_analyzers,
            "people": self.people,
        }


def ingest(library: Library, paths: Sequence[str | Path] = (), rescan: bool = True, workers: int | None = None,
           batch_size: int = 16, limit: int | None = None, progress: ProgressFn | None = None,
           on_scan: Callable[[ScanReport], None] | None = None,
           on_phase: Callable[[str], None] | None = None) -> IngestReport:
    """Add `paths` as sources (none: all known sources), scan, and process all pending work.

    `progress` gets (done, failed, remaining) for the current phase; `on_phase` is told when a phase starts
    ("extract", then "analyze"), so a progress bar can start counting afresh.
    """
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
            if on_phase:
                on_phase("extract")
            report.run = run_extract(session, library, workers=workers, batch_size=batch_size, limit=limit,
                                     progress=progress)
            if on_phase:
                on_phase("analyze")
            _run_analyzers(session, library, report, batch_size, progress, workers)
    return report


def _run_analyzers(session, library: Library, report: IngestReport, batch_size: int,  # type: ignore[no-untyped-def]
                   progress: ProgressFn | None, workers: int) -> None:
    """Each enabled analyzer over every finished file; a missing model is reported once and skipped."""
    from ingest.analyze import backfill, enabled_analyzers, load_analyzer, run_analyzers
    from ingest.analyzers.base import ModelNotFound
    from ingest.analyzers.select import resolve_profile
    from ingest.queue import reclaim_stale

    profile, warning = resolve_profile()
    if warning:  # e.g. `full` asked for but not fetched: say so once and run on `offline`
        report.skipped_analyzers["profile"] = warning
        import os

        os.environ["PHOTO_ENGINE_PROFILE"] = profile

    models = {}
    for stage in enabled_analyzers():
        backfill(session, [stage])
        try:
            models[stage] = load_analyzer(stage)
        except (ModelNotFound, ImportError) as error:
            report.skipped_analyzers[stage] = str(error)
    try:
        report.analyzers.update(run_analyzers(session, library, list(models), batch_size=batch_size,
                                              progress=progress, models=models, workers=workers))
    except (ModelNotFound, ImportError):  # weights that fail only when first used: find which, run the rest
        for stage, model in models.items():
            session.rollback()
            reclaim_stale(session)
            try:
                report.analyzers.update(run_analyzers(session, library, [stage], batch_size=batch_size,
                                                      progress=progress, models={stage: model}, workers=workers))
            except (ModelNotFound, ImportError) as error:
                report.skipped_analyzers[stage] = str(error)
        session.rollback()
        reclaim_stale(session)
    if "faces" in report.analyzers:
        from ingest.people import recluster

        report.people = recluster(session)
