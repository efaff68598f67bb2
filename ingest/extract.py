"""The `extract` stage for one file: metadata, place, thumbnails and keyframes from a single read.

Runs in worker processes, so it only reads the source and writes derived files (named by content hash, so a
retry after a kill simply overwrites them); the catalog rows are written by the parent, one batch at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imagehash

from catalog.settings import Library
from ingest.geocode import place_for
from ingest.media import THUMB_LARGE, THUMB_SMALL, DecodeError, make_thumbnails, resize_to_fit, save_image
from ingest.metadata import (MediaMetadata, MetadataError, apply_file_time_fallback, read_photo_metadata,
                             read_video_metadata)
from ingest.media import open_image
from ingest.video import extract_keyframes


@dataclass(frozen=True)
class ExtractJob:
    task_id: int
    media_id: int
    path: bytes
    kind: str
    format: str | None
    content_hash: str
    library_root: str


@dataclass
class FrameOut:
    idx: int
    time: float
    width: int
    height: int
    scene_change: float


@dataclass
class ExtractResult:
    task_id: int
    media_id: int
    fields: dict[str, Any] = field(default_factory=dict)
    frames: list[FrameOut] = field(default_factory=list)
    error: str | None = None


def metadata_fields(meta: MediaMetadata) -> dict[str, Any]:
    """Media columns from metadata, with the place name looked up offline."""
    fields: dict[str, Any] = {
        "taken_at": meta.taken_at, "taken_at_offset": meta.taken_at_offset,
        "taken_at_source": meta.taken_at_source,
        "year": meta.taken_at.year if meta.taken_at else None,
        "month": meta.taken_at.month if meta.taken_at else None,
        "lat": meta.lat, "lon": meta.lon, "camera": meta.camera, "orientation": meta.orientation,
        "width": meta.width, "height": meta.height, "duration": meta.duration,
    }
    if meta.lat is not None and meta.lon is not None:
        place = place_for(meta.lat, meta.lon)
        if place is not None:
            fields.update(place=place.label, city=place.city, region=place.region, country=place.country_code)
    return fields


def extract(job: ExtractJob) -> ExtractResult:
    """Do the whole stage for one file; any failure becomes a clear reason, never an exception."""
    result = ExtractResult(task_id=job.task_id, media_id=job.media_id)
    path = os.fsdecode(job.path)
    library = Library(root=Path(job.library_root), database_url="", milvus_uri="")
    try:
        mtime = os.stat(path).st_mtime
    except OSError as error:
        result.error = f"cannot read: {error.strerror or error}"
        return result
    try:
        read = read_video_metadata if job.kind == "video" else read_photo_metadata
        meta = read(path)
    except MetadataError as error:
        if job.kind == "video":
            result.error = f"unreadable video: {error}"
            return result
        meta = MediaMetadata()  # decoding below gives the precise reason if the photo is broken too
    result.fields = metadata_fields(apply_file_time_fallback(meta, mtime))
    try:
        if job.kind == "video":
            result.frames = _keyframes(path, job.content_hash, library)
        else:
            _photo_derivatives(path, job, library, result)
    except DecodeError as error:
        result.error = str(error)
    except MemoryError:
        result.error = "out of memory while decoding (image too large?)"
    except Exception as error:  # a decoder bug must not stop the run: record it with its type
        result.error = f"unexpected {type(error).__name__} while decoding: {error}"
    return result


def _photo_derivatives(path: str, job: ExtractJob, library: Library, result: ExtractResult) -> None:
    image = open_image(path, fmt=job.format, max_side=THUMB_LARGE)
    small = make_thumbnails(image, str(library.thumb_path(job.content_hash, "small")),
                            str(library.thumb_path(job.content_hash, "large")))
    result.fields["phash"] = str(imagehash.phash(small))  # the image searches hash too (tools/search.py)
    if not result.fields.get("width"):
        result.fields["width"], result.fields["height"] = image.info.get("source_size", image.size)


def _keyframes(path: str, content_hash: str, library: Library) -> list[FrameOut]:
    frames = []
    for idx, keyframe in enumerate(extract_keyframes(path, max_side=THUMB_LARGE)):
        time_ms = int(round(keyframe.time * 1000))
        save_image(keyframe.image, str(library.frame_path(content_hash, time_ms, "large")))
        save_image(resize_to_fit(keyframe.image, THUMB_SMALL), str(library.frame_path(content_hash, time_ms, "small")))
        width, height = keyframe.image.size
        frames.append(FrameOut(idx=idx, time=keyframe.time, width=width, height=height,
                               scene_change=keyframe.scene_change))
    return frames
