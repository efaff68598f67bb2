"""Catalog tables: one row per source folder, file, keyframe, face, person, caption, tag and stage task.

Times a camera wrote are stored as naive wall-clock datetimes with the UTC offset beside them when known,
because EXIF dates have no zone and "taken at 9 in the morning" must stay 9 in the morning.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from pydantic import NaiveDatetime
from sqlalchemy import Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 2


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class SchemaInfo(SQLModel, table=True):
    """Key/value facts about the catalog itself (its schema version)."""

    key: str = Field(primary_key=True)
    value: str


class Source(SQLModel, table=True):
    """A folder the user pointed the engine at; never modified."""

    id: Optional[int] = Field(default=None, primary_key=True)
    path: str = Field(index=True, unique=True)
    added_at: NaiveDatetime = Field(default_factory=utcnow)
    last_scan_at: Optional[NaiveDatetime] = None


class Media(SQLModel, table=True):
    """One file under a source. `path_bytes` is the exact OS path (names need not be UTF-8)."""

    id: Optional[int] = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id", index=True)
    path: str = Field(index=True)
    path_bytes: bytes = Field(sa_column=Column(LargeBinary, unique=True, nullable=False))
    kind: str = Field(index=True)  # "photo" | "video" | "unknown"
    format: Optional[str] = None
    size: int = 0
    mtime_ns: int = 0
    content_hash: Optional[str] = Field(default=None, index=True)
    state: str = Field(default="active", index=True)  # "active" | "deleted"
    error: Optional[str] = None
    taken_at: Optional[NaiveDatetime] = Field(default=None, index=True)
    taken_at_offset: Optional[str] = None
    taken_at_source: Optional[str] = None
    year: Optional[int] = Field(default=None, index=True)
    month: Optional[int] = None
    lat: Optional[float] = None
    lon: Optional[float] = None
    place: Optional[str] = Field(default=None, index=True)
    city: Optional[str] = None
    region: Optional[str] = None
    country: Optional[str] = None
    camera: Optional[str] = Field(default=None, index=True)
    width: Optional[int] = None
    height: Optional[int] = None
    orientation: Optional[int] = None
    duration: Optional[float] = None
    phash: Optional[str] = None
    added_at: NaiveDatetime = Field(default_factory=utcnow)
    updated_at: NaiveDatetime = Field(default_factory=utcnow)


class Frame(SQLModel, table=True):
    """A kept keyframe of a video, ready for the analyzers."""

    __table_args__ = (UniqueConstraint("media_id", "idx"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    media_id: int = Field(foreign_key="media.id", index=True)
    idx: int
    time: float
    width: int
    height: int
    scene_change: float = 1.0


class Person(SQLModel, table=True):
    """A cluster of faces; a name given by the user sticks across re-clustering."""

    id: Optional[int] = Field(default=None, primary_key=True)
    name: Optional[str] = Field(default=None, index=True)
    created_at: NaiveDatetime = Field(default_factory=utcnow)


class Face(SQLModel, table=True):
    """A detected face on a photo or a keyframe, with its embedding for clustering."""

    id: Optional[int] = Field(default=None, primary_key=True)
    media_id: int = Field(foreign_key="media.id", index=True)
    frame_id: Optional[int] = Field(default=None, foreign_key="frame.id", index=True)
    person_id: Optional[int] = Field(default=None, foreign_key="person.id", index=True)
    x: float
    y: float
    w: float
    h: float
    score: float = 0.0
    quality: float = 0.0
    model: str = ""
    embedding: Optional[bytes] = Field(default=None, sa_column=Column(LargeBinary))


class Caption(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    media_id: int = Field(foreign_key="media.id", index=True)
    frame_id: Optional[int] = Field(default=None, foreign_key="frame.id")
    text: str
    model: str = ""


class Tag(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    media_id: int = Field(foreign_key="media.id", index=True)
    frame_id: Optional[int] = Field(default=None, foreign_key="frame.id")
    label: str = Field(index=True)
    score: float
    model: str = ""


class Task(SQLModel, table=True):
    """One stage of one file: the checkpoint that makes ingest resumable."""

    __table_args__ = (UniqueConstraint("media_id", "stage"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    media_id: int = Field(foreign_key="media.id", index=True)
    stage: str = Field(index=True)
    status: str = Field(default="pending", index=True)  # pending | running | done | failed
    attempts: int = 0
    error: Optional[str] = None
    model: Optional[str] = None  # the model that produced this stage's results (schema v2)
    updated_at: NaiveDatetime = Field(default_factory=utcnow)
