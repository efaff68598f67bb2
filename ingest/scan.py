"""Scan a source folder into catalog rows: new, changed, moved (by content hash), deleted, or bad.

A rescan reads only files whose size or mtime changed; a file that reappears elsewhere with the same bytes is
the same Media row (its analysis is kept), and a vanished file is marked deleted, never dropped.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from sqlalchemy import delete
from sqlmodel import Session, select

from catalog.models import Caption, Face, Frame, Media, Source, Tag, Task, utcnow
from catalog.settings import Library
from ingest.detect import MEDIA_EXTENSIONS, UnsupportedMedia, detect
from ingest.hashing import content_hash
from ingest.queue import FAILED, enqueue
from ingest.stages import SCAN_STAGE, stages_for
from ingest.walk import FoundFile, display_path, walk_files

COMMIT_EVERY = 200


@dataclass
class ScanReport:
    """What one scan of one source found."""

    source: str
    seen: int = 0
    new: int = 0
    changed: int = 0
    moved: int = 0
    deleted: int = 0
    unchanged: int = 0
    ignored: int = 0
    failed: int = 0
    deleted_ids: set[int] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict:
        data = asdict(self)
        del data["deleted_ids"]
        return data


@dataclass(frozen=True)
class Probe:
    """What reading a file's header and bytes told us."""

    found: FoundFile
    kind: str | None = None
    format: str | None = None
    content_hash: str | None = None
    problem: str | None = None


def add_source(session: Session, folder: str | Path) -> Source:
    """Register a folder (idempotent); a folder inside a known source is that source."""
    path = os.path.realpath(os.fspath(folder))
    if not os.path.isdir(path):
        raise NotADirectoryError(f"not a folder: {folder}")
    for source in session.exec(select(Source)).all():
        if path == source.path or path.startswith(source.path.rstrip(os.sep) + os.sep):
            return source
    source = Source(path=path)
    session.add(source)
    session.commit()
    return source


def looks_like_media_name(path: bytes) -> bool:
    return os.path.splitext(path)[1].decode("ascii", "ignore").lower() in MEDIA_EXTENSIONS


def probe(found: FoundFile) -> Probe:
    """Detect the kind by content and hash the bytes; never raises."""
    if not found.regular:
        return Probe(found, problem=found.problem)
    try:
        detected = detect(os.fsdecode(found.path))
    except UnsupportedMedia as reason:
        try:
            digest = content_hash(found.path)
        except OSError:
            digest = None
        return Probe(found, content_hash=digest, problem=str(reason))
    except OSError as error:
        return Probe(found, problem=f"cannot read: {error.strerror or error}")
    try:
        digest = content_hash(found.path)
    except OSError as error:
        return Probe(found, problem=f"cannot read: {error.strerror or error}")
    return Probe(found, kind=detected.kind, format=detected.format, content_hash=digest)


def clear_derived(session: Session, media_id: int) -> None:
    """Forget what was derived from a file's old bytes (its content changed)."""
    for table in (Face, Caption, Tag, Frame):
        session.exec(delete(table).where(table.media_id == media_id))  # type: ignore[call-overload]


def scan_source(session: Session, library: Library, source: Source, workers: int = 2) -> ScanReport:
    """Bring the catalog in line with what is on disk under one source."""
    report = ScanReport(source=source.path)
    known = {m.path_bytes: m for m in session.exec(select(Media).where(Media.source_id == source.id)).all()}
    seen: set[bytes] = set()
    candidates: list[FoundFile] = []
    for found in walk_files(os.fsencode(source.path), skip_dirs=frozenset({os.fsencode(library.root)})):
        report.seen += 1
        seen.add(found.path)
        media = known.get(found.path)
        if media and media.state == "active" and (media.size, media.mtime_ns) == (found.size, found.mtime_ns) \
                and found.regular:
            report.unchanged += 1
            continue
        candidates.append(found)

    for media in known.values():
        if media.state == "active" and media.path_bytes not in seen:
            media.state, media.updated_at = "deleted", utcnow()
            session.add(media)
            report.deleted += 1
            report.deleted_ids.add(media.id or 0)
    session.commit()

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for count, result in enumerate(pool.map(probe, candidates), start=1):
            _apply_probe(session, source, result, known.get(result.found.path), report)
            if count % COMMIT_EVERY == 0:
                session.commit()
    source.last_scan_at = utcnow()
    session.add(source)
    session.commit()
    return report


def _apply_probe(session: Session, source: Source, result: Probe, media: Media | None, report: ScanReport) -> None:
    found = result.found
    if result.kind is None and media is None and not looks_like_media_name(found.path):
        if found.size > 0 or not found.regular:
            report.ignored += 1
            return
    if media is None:
        media = session.exec(select(Media).where(Media.path_bytes == found.path)).first()
        if media is not None and media.source_id != source.id and media.state == "active":
            report.unchanged += 1  # already catalogued through an overlapping source
            return
    if media is None and result.kind and result.content_hash:
        media = _find_moved(session, result.content_hash, result.kind)
        if media is not None:
            media.path_bytes, media.path, media.source_id = found.path, display_path(found.path), source.id
            media.size, media.mtime_ns, media.state, media.updated_at = found.size, found.mtime_ns, "active", utcnow()
            session.add(media)
            report.moved += 1
            if media.id in report.deleted_ids:
                report.deleted -= 1  # it moved, it was not deleted
            return
    is_new = media is None
    if media is None:
        media = Media(source_id=source.id, path=display_path(found.path), path_bytes=found.path, kind="unknown")
    elif media.content_hash == result.content_hash and media.kind == (result.kind or "unknown"):
        media.size, media.mtime_ns, media.state, media.updated_at = found.size, found.mtime_ns, "active", utcnow()
        session.add(media)
        report.unchanged += 1
        return
    media.size, media.mtime_ns, media.state, media.updated_at = found.size, found.mtime_ns, "active", utcnow()
    media.content_hash, media.kind, media.format = result.content_hash, result.kind or "unknown", result.format
    media.error = result.problem
    session.add(media)
    session.flush()
    assert media.id is not None
    if not is_new:
        clear_derived(session, media.id)
        session.exec(delete(Task).where(Task.media_id == media.id))  # type: ignore[call-overload]
        report.changed += 1
    else:
        report.new += 1
    if result.kind is None:
        session.add(Task(media_id=media.id, stage=SCAN_STAGE, status=FAILED, attempts=1,
                         error=result.problem or "not a photo or video"))
        report.failed += 1
    else:
        enqueue(session, media.id, stages_for(result.kind))


def _find_moved(session: Session, digest: str, kind: str) -> Media | None:
    """A deleted row with the same bytes: the file was moved or renamed."""
    return session.exec(select(Media).where(Media.content_hash == digest, Media.state == "deleted",
                                            Media.kind == kind)).first()


def scan_all(session: Session, library: Library, sources: Iterable[Source], workers: int = 2) -> list[ScanReport]:
    return [scan_source(session, library, source, workers) for source in sources]

