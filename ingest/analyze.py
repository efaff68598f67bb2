"""Analyzer stages (`tags`, `faces`): run a model over the derived images of finished files, in batches.

Analyzers read the large thumbnails and keyframes that `extract` wrote (already upright and small), never the
originals again. The model is loaded once per run; each batch of tasks is committed with its results, so a
kill loses at most one batch. Changing one analyzer's model re-queues only that analyzer's stage.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image
from sqlalchemy import delete
from sqlmodel import Session, select

from catalog.model_config import model_spec
from catalog.models import Caption, Face, Frame, Media, Tag, Task
from catalog.settings import Library
from ingest.pipeline import ProgressFn, RunSummary
from ingest.queue import DONE, claim, count_by_status, enqueue, mark_done, mark_failed
from ingest.stages import EXTRACT_STAGE

ANALYZERS_ENV = "PHOTO_ENGINE_ANALYZERS"
ANALYZER_STAGES = ("embed", "tags", "faces", "captions")
_NEEDS = {"embed": "torchvision", "tags": "torchvision", "faces": "dlib", "captions": "transformers"}


@dataclass(frozen=True)
class ImageRef:
    """One image an analyzer looks at: a photo's large thumbnail or one keyframe of a video."""

    media_id: int
    frame_id: int | None
    path: str


def enabled_analyzers() -> list[str]:
    """`$PHOTO_ENGINE_ANALYZERS` ("none", or e.g. "tags,faces"), else every offline analyzer that is installed."""
    wanted = os.environ.get(ANALYZERS_ENV)
    if wanted is not None:
        names = [n.strip() for n in wanted.split(",") if n.strip() and n.strip() != "none"]
        unknown = set(names) - set(ANALYZER_STAGES)
        if unknown:
            raise ValueError(f"unknown analyzers {sorted(unknown)}; choose from {list(ANALYZER_STAGES)}")
        return names
    return [name for name in ANALYZER_STAGES
            if model_spec(name) is not None and importlib.util.find_spec(_NEEDS[name]) is not None]


def load_analyzer(stage: str) -> Any:
    """The model behind a stage, chosen by the active profile in models.yaml."""
    spec = model_spec(stage) or {}
    if stage == "tags":
        from ingest.analyzers import tags

        return tags.load(spec)
    if stage == "faces":
        if "buffalo" in str(spec.get("model", "")) or spec.get("kind") == "insightface":
            from ingest.analyzers import faces_insight

            return faces_insight.load(spec)
        from ingest.analyzers import faces

        return faces.load(spec)
    if stage == "captions":
        from ingest.analyzers import captions

        return captions.load(spec)
    if stage == "embed":
        from ingest.analyzers import embed

        return embed.load(spec)
    raise ValueError(f"no analyzer for stage {stage!r}")


def requeue_other_models(session: Session, stage: str, model_id: str) -> int:
    """Results of a stage made by another model are recomputed (only that stage: the others stay)."""
    stale = session.exec(select(Task).where(Task.stage == stage, Task.status == DONE,
                                            Task.model != model_id)).all()  # type: ignore[arg-type]
    for task in stale:
        task.status, task.attempts = "pending", 0
        session.add(task)
    session.commit()
    return len(stale)


def backfill(session: Session, stages: list[str]) -> int:
    """Queue enabled analyzer stages for every file whose extract is done (new analyzers, older files)."""
    added = 0
    for stage in stages:
        have = select(Task.media_id).where(Task.stage == stage)
        ready = session.exec(select(Task.media_id).where(Task.stage == EXTRACT_STAGE, Task.status == DONE,
                                                         Task.media_id.not_in(have))).all()  # type: ignore[union-attr]
        for media_id in ready:
            enqueue(session, media_id, [stage])
            added += 1
    session.commit()
    return added


def images_of(session: Session, library: Library, media: Media) -> list[ImageRef]:
    if media.kind == "video":
        frames = session.exec(select(Frame).where(Frame.media_id == media.id).order_by(Frame.idx)).all()
        return [ImageRef(media.id or 0, f.id, str(library.frame_path(media.content_hash or "",
                                                                      int(round(f.time * 1000)), "large")))
                for f in frames]
    return [ImageRef(media.id or 0, None, str(library.thumb_path(media.content_hash or "", "large")))]


def run_analyzer(session: Session, library: Library, stage: str, batch_size: int = 16,
                 progress: ProgressFn | None = None, model: Any = None) -> RunSummary:
    """Work all pending tasks of one analyzer stage."""
    summary = RunSummary()
    started = time.monotonic()
    model = model or load_analyzer(stage)
    model_id = getattr(model, "model_id", stage)
    requeue_other_models(session, stage, model_id)
    if not count_by_status(session, stage).get("pending"):
        return summary
    vectors = _VectorWriter(library, model) if stage == "embed" else None
    while tasks := claim(session, stage, batch_size):
        refs: list[tuple[Task, list[ImageRef]]] = []
        for task in tasks:
            media = session.get(Media, task.media_id)
            refs.append((task, images_of(session, library, media) if media else []))
        flat = [ref for _, group in refs for ref in group]
        images, broken = _load_images(flat)
        results = iter(model.run([img for img in images if img is not None]) if any(images) else [])
        by_ref = {ref: (next(results) if img is not None else None) for ref, img in zip(flat, images)}
        for task, group in refs:
            missing = [r.path for r in group if r.path in broken]
            if missing:
                mark_failed(session, task, f"derived image missing or unreadable: {broken[missing[0]]}")
                summary.failed += 1
                continue
            if vectors is not None:
                for ref in group:
                    vectors.add(session, ref, by_ref[ref])
            else:
                table = _TABLES[stage]
                session.exec(delete(table).where(table.media_id == task.media_id))  # type: ignore[call-overload]
                for ref in group:
                    _WRITERS[stage](session, ref, by_ref[ref], model_id)
            mark_done(session, task)
            task.model = model_id
            summary.done += 1
        if vectors is not None:
            vectors.flush()  # vectors first: a kill before the commit only repeats an idempotent upsert
        session.commit()
        if progress:
            progress(summary.done, summary.failed, count_by_status(session, stage).get("pending", 0))
    if vectors is not None:
        vectors.store.close()
    summary.seconds = time.monotonic() - started
    return summary


def _load_images(refs: list[ImageRef]) -> tuple[list[Image.Image | None], dict[str, str]]:
    images: list[Image.Image | None] = []
    broken: dict[str, str] = {}
    for ref in refs:
        try:
            with Image.open(ref.path) as img:
                images.append(img.convert("RGB"))
        except (OSError, ValueError) as error:
            images.append(None)
            broken[ref.path] = str(error)
    return images, broken


def _write_tags(session: Session, ref: ImageRef, labels: list[tuple[str, float]], model_id: str) -> None:
    for label, score in labels:
        session.add(Tag(media_id=ref.media_id, frame_id=ref.frame_id, label=label, score=float(score),
                        model=model_id))


def _write_faces(session: Session, ref: ImageRef, faces: list[Any], model_id: str) -> None:
    with Image.open(ref.path) as img:
        width, height = img.size
    for face in faces:
        x, y, w, h = face.box
        session.add(Face(media_id=ref.media_id, frame_id=ref.frame_id, x=x / width, y=y / height, w=w / width,
                         h=h / height, score=float(face.score), quality=float(face.quality), model=model_id,
                         embedding=np.asarray(face.embedding, dtype=np.float32).tobytes()))


class _VectorWriter:
    """Collects image vectors with their filterable fields and upserts them to Milvus once per batch."""

    def __init__(self, library: Library, model: Any) -> None:
        from catalog.vectors import VectorStore

        self.store = VectorStore(library.milvus_uri)
        self.model = model
        self.collection: str | None = None
        self.rows: list[dict[str, Any]] = []

    def add(self, session: Session, ref: ImageRef, vector: np.ndarray) -> None:
        from catalog.vectors import image_vector_id, wallclock_ts

        media = session.get(Media, ref.media_id)
        frame = session.get(Frame, ref.frame_id) if ref.frame_id else None
        if media is None:
            return
        if self.collection is None:
            self.collection = self.store.ensure_images(self.model.model_id, len(vector))
        self.rows.append({
            "id": image_vector_id(media.id or 0, frame.idx if frame else None), "media_id": media.id,
            "frame_id": frame.id if frame else -1, "time": float(frame.time) if frame else 0.0, "kind": media.kind,
            "taken_ts": wallclock_ts(media.taken_at), "year": media.year or 0, "month": media.month or 0,
            "vector": np.asarray(vector, dtype=np.float32).tolist()})

    def flush(self) -> None:
        if self.collection and self.rows:
            self.store.upsert_images(self.collection, self.rows)
        self.rows = []


def _write_caption(session: Session, ref: ImageRef, text: str, model_id: str) -> None:
    if text:
        session.add(Caption(media_id=ref.media_id, frame_id=ref.frame_id, text=text, model=model_id))


_WRITERS: dict[str, Callable[[Session, ImageRef, Any, str], None]] = {
    "tags": _write_tags, "faces": _write_faces, "captions": _write_caption}
_TABLES: dict[str, Any] = {"tags": Tag, "faces": Face, "captions": Caption}
