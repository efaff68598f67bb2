"""Library-wide facts as plain dicts: what `status` and `info` print, and what the agent and API return."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from catalog.db import schema_version, session_for
from catalog.models import Caption, Face, Frame, Media, Person, Source, Tag, Task
from catalog.settings import Library
from catalog.vectors import VectorStore

ACTIVE = Media.state == "active"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def library_status(library: Library, check_vectors: bool = True) -> dict[str, Any]:
    """Counts, pending work, failures with reasons, and a health line for each store."""
    with session_for(library.database_url) as session:
        kinds = dict(session.exec(select(Media.kind, func.count()).where(ACTIVE).group_by(Media.kind)).all())
        frames = session.exec(select(func.count()).select_from(Frame).join(Media).where(ACTIVE)).one()
        faces = session.exec(select(func.count()).select_from(Face).join(Media).where(ACTIVE)).one()
        people = session.exec(select(func.count()).select_from(Person)).one()
        by_status = dict(session.exec(
            select(Task.status, func.count()).join(Media).where(ACTIVE).group_by(Task.status)).all())
        failed_rows = session.exec(
            select(Media.path, Task.stage, Task.error).join(Media).where(ACTIVE, Task.status == "failed")
            .order_by(Media.path)).all()
        deleted = session.exec(select(func.count()).select_from(Media).where(Media.state == "deleted")).one()
        sources = [s.path for s in session.exec(select(Source)).all()]
    health: dict[str, Any] = {"catalog": "ok", "schema_version": schema_version(library.database_url),
                              "database": _redact(library.database_url)}
    if check_vectors:
        with VectorStore(library.milvus_uri) as store:
            reachable, detail = store.health()
        health["vectors"] = "ok" if reachable else f"unreachable: {detail}"
    return {
        "library": str(library.root),
        "sources": sources,
        "media": {"photo": kinds.get("photo", 0), "video": kinds.get("video", 0)},
        "unrecognized": kinds.get("unknown", 0),
        "deleted": deleted,
        "frames": frames,
        "faces": faces,
        "people": people,
        "pending": by_status.get("pending", 0) + by_status.get("running", 0),
        "done": by_status.get("done", 0),
        "failed": [{"path": path, "stage": stage, "error": error} for path, stage, error in failed_rows],
        "health": health,
    }


def _redact(url: str) -> str:
    """Never print a database password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def find_media(session: Session, ref: str | int) -> Media | None:
    """A media row by id, or by path (as given, absolute, or resolved through symlinks)."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit() and not os.path.exists(ref)):
        return session.get(Media, int(ref))
    for candidate in dict.fromkeys([os.fsencode(ref), os.fsencode(os.path.abspath(ref)),
                                    os.fsencode(os.path.realpath(ref))]):
        media = session.exec(select(Media).where(Media.path_bytes == candidate)).first()
        if media is not None:
            return media
    return None


def media_info(library: Library, ref: str | int) -> dict[str, Any] | None:
    """Everything the catalog knows of one file, or None if it is not in the library."""
    with session_for(library.database_url) as session:
        media = find_media(session, ref)
        if media is None:
            return None
        frames = session.exec(select(Frame).where(Frame.media_id == media.id).order_by(Frame.idx)).all()
        tasks = session.exec(select(Task).where(Task.media_id == media.id)).all()
        faces = session.exec(select(Face).where(Face.media_id == media.id)).all()
        tags = session.exec(select(Tag).where(Tag.media_id == media.id).order_by(Tag.score.desc())).all()
        captions = session.exec(select(Caption).where(Caption.media_id == media.id)).all()
        return media_record(media, frames, tasks, faces, tags, captions)


def media_record(media: Media, frames, tasks, faces, tags, captions) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    failed = [t for t in tasks if t.status == "failed"]
    if media.state == "deleted":
        status = "deleted"
    elif failed:
        status = "failed"
    elif any(t.status in ("pending", "running") for t in tasks):
        status = "pending"
    else:
        status = "done"
    return {
        "media_id": media.id, "path": media.path, "kind": media.kind, "format": media.format,
        "size": media.size, "content_hash": media.content_hash,
        "taken_at": _iso(media.taken_at), "taken_at_offset": media.taken_at_offset,
        "taken_at_source": media.taken_at_source,
        "lat": media.lat, "lon": media.lon, "place": media.place, "camera": media.camera,
        "width": media.width, "height": media.height, "orientation": media.orientation,
        "duration": media.duration, "status": status,
        "error": media.error or (failed[0].error if failed else None),
        "stages": {t.stage: t.status for t in tasks},
        "frames": [{"frame_id": f.id, "index": f.idx, "time": round(f.time, 3), "width": f.width,
                    "height": f.height} for f in frames],
        "faces": [{"face_id": f.id, "person_id": f.person_id, "box": [f.x, f.y, f.w, f.h],
                   "frame_id": f.frame_id} for f in faces],
        "tags": [{"label": t.label, "score": round(t.score, 3), "frame_id": t.frame_id} for t in tags],
        "captions": [{"text": c.text, "frame_id": c.frame_id} for c in captions],
    }
