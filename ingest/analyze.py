"""Analyzer stages (`tags`, `faces`): run a model over the derived images of finished files, in batches.

Analyzers read the large thumbnails and keyframes that `extract` wrote (already upright and small), never the
originals again. The model is loaded once per run; each batch of tasks is committed with its results, so a
kill loses at most one batch. Changing one analyzer's model re-queues only that analyzer's stage.
"""

from __future__ import annotations

import importlib.util
import logging
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
from ingest.analyzers.base import capped_threads
from ingest.pipeline import ProgressFn, RunSummary, default_workers
from ingest.queue import DONE, claim_media, count_by_status, enqueue, mark_done, mark_failed
from ingest.stages import EXTRACT_STAGE

log = logging.getLogger(__name__)
MAX_DECODED = 32  # derived images this process holds decoded at once (see _Batch.run_here)
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
    return run_analyzers(session, library, [stage], batch_size, progress,
                         models={stage: model} if model is not None else None)[stage]


def run_analyzers(session: Session, library: Library, stages: list[str], batch_size: int = 16,
                  progress: ProgressFn | None = None, models: dict[str, Any] | None = None,
                  workers: int | None = None) -> dict[str, RunSummary]:
    """Work all pending tasks of these analyzer stages, one batch of files at a time.

    Each derived image is decoded once in this process for all of its analyzers, and MobileNetV2 runs once when
    it serves both `embed` and `tags`; single-threaded analyzers (dlib faces) run in `workers` processes that
    decode the files themselves, fed a batch ahead, while torch uses this one, so no core idles
    (benchmarks/RESULTS.md has the measurements).
    """
    models = dict(models or {})
    for stage in stages:
        models.setdefault(stage, load_analyzer(stage))
    summaries = {stage: RunSummary() for stage in stages}
    started = time.monotonic()
    active = []
    for stage in stages:
        requeue_other_models(session, stage, getattr(models[stage], "model_id", stage))
        if count_by_status(session, stage).get("pending"):
            active.append(stage)
    if not active:
        return summaries
    vectors = _VectorWriter(library, models["embed"]) if "embed" in active else None
    offloaded = [s for s in active if getattr(models[s], "single_threaded", False)]
    pool = _FilePool(workers or default_workers()) if offloaded else None
    # with workers on every core, torch here gets a quarter of them: its share of the work (measured: MobileNetV2
    # ~65 ms vs dlib ~200 ms per image), slightly oversubscribed rather than leaving a core idle
    threads = max(1, round(default_workers() / 4)) if pool is not None else default_workers()
    try:
        with capped_threads(threads):
            _work_batches(session, library, active, batch_size, progress, models, offloaded, pool, vectors,
                          summaries)
    finally:
        if pool is not None:
            pool.close()
        if vectors is not None:
            vectors.close(refresh_snapshot=summaries["embed"].done > 0)
    for summary in summaries.values():
        summary.seconds = time.monotonic() - started
    return summaries


def _work_batches(session: Session, library: Library, active: list[str], batch_size: int,
                  progress: ProgressFn | None, models: dict[str, Any], offloaded: list[str],
                  pool: "_FilePool | None", vectors: "_VectorWriter | None", summaries: dict[str, RunSummary]) -> None:
    """Batches in a two-step pipeline: the worker processes are handed the next batch's files before this one's
    results are awaited and written, so they never wait for this process between batches (that wait, and
    the tail of each batch, left the two cores idle for 12-14 % of the stage: measured with per-process CPU)."""
    claimed = claim_media(session, active, batch_size)
    batch = _Batch.start(session, library, claimed, offloaded, models, pool) if claimed else None
    while batch is not None:
        batch.run_here(models)
        claimed = claim_media(session, active, batch_size)
        following = _Batch.start(session, library, claimed, offloaded, models, pool) if claimed else None
        batch.finish(session, models, pool, vectors, summaries)
        if vectors is not None:
            vectors.flush()  # vectors first: a kill before the commit only repeats an idempotent upsert
        session.commit()
        if progress:
            done = sum(s.done for s in summaries.values())
            failed = sum(s.failed for s in summaries.values())
            remaining = sum(count_by_status(session, s).get("pending", 0) for s in active)
            progress(done, failed, remaining)
        batch = following


@dataclass
class _Batch:
    """One claimed batch of files: their images, which stages want each, and the work handed to workers."""

    tasks: list[Task]
    refs_of: dict[int, list[ImageRef]]
    stages_of: dict[ImageRef, set[str]]
    offloaded: list[str]
    submitted: dict[str, tuple[list[ImageRef], "_Submitted"]]
    results: dict[str, dict[ImageRef, Any]]
    outcome: "_Outcome"

    @classmethod
    def start(cls, session: Session, library: Library, tasks: list[Task], offloaded: list[str],
              models: dict[str, Any], pool: "_FilePool | None") -> "_Batch":
        """Find the batch's images and hand the worker-process stages their files right away (they decode
        them themselves)."""
        refs_of: dict[int, list[ImageRef]] = {}
        for task in tasks:
            if task.media_id not in refs_of:
                media = session.get(Media, task.media_id)
                refs_of[task.media_id] = images_of(session, library, media) if media else []
        stages_of: dict[ImageRef, set[str]] = {}
        for task in tasks:
            for ref in refs_of[task.media_id]:
                stages_of.setdefault(ref, set()).add(task.stage)
        results: dict[str, dict[ImageRef, Any]] = {task.stage: {} for task in tasks}
        submitted = {}
        for stage in offloaded:
            refs = [r for r in stages_of if stage in stages_of[r]]
            if refs and pool is not None:
                submitted[stage] = (refs, pool.submit(models[stage], [r.path for r in refs]))
        return cls(tasks, refs_of, stages_of, offloaded, submitted, results, _Outcome())

    def run_here(self, models: dict[str, Any]) -> None:
        """Decode and run this process's stages, MAX_DECODED images at a time: a batch of 16 videos holds ~280
        keyframes, and decoding them all at once took the 10k-file benchmark's memory from 2.5 GB to 4 GB."""
        here = [r for r in self.stages_of if self.stages_of[r] - set(self.offloaded)]
        for start in range(0, len(here), MAX_DECODED):
            chunk = here[start:start + MAX_DECODED]
            decoded = self.outcome.decode(chunk)
            wanted = {stage: [r for r in chunk if r in decoded and stage in self.stages_of[r]]
                      for stage in self.results if stage not in self.offloaded}
            _run_local_models(models, decoded, wanted, self.results)

    def finish(self, session: Session, models: dict[str, Any], pool: "_FilePool | None",
               vectors: "_VectorWriter | None", summaries: dict[str, RunSummary]) -> None:
        """Wait for the workers' results, write every result, close the tasks (the caller commits)."""
        for stage, (refs, submitted) in self.submitted.items():
            self.outcome.collect(stage, refs, pool.collect(submitted), self.results)  # type: ignore[union-attr]
        for task in self.tasks:
            summary, group = summaries[task.stage], self.refs_of[task.media_id]
            reason = self.outcome.failure(task.stage, group)
            if reason:
                mark_failed(session, task, reason)
                summary.failed += 1
                continue
            by_ref = self.results.get(task.stage, {})
            model_id = getattr(models[task.stage], "model_id", task.stage)
            if vectors is not None and task.stage == "embed":
                for ref in group:
                    vectors.add(session, ref, by_ref[ref])
            else:
                table = _TABLES[task.stage]
                session.exec(delete(table).where(table.media_id == task.media_id))  # type: ignore[call-overload]
                for ref in group:
                    _WRITERS[task.stage](session, ref, by_ref[ref], model_id, self.outcome.sizes[ref])
            mark_done(session, task)
            task.model = model_id
            summary.done += 1


class _Outcome:
    """What one batch learned about its images: their sizes, which are unreadable, which stages crashed."""

    def __init__(self) -> None:
        self.sizes: dict[ImageRef, tuple[int, int]] = {}
        self.broken: dict[str, str] = {}
        self.crashed: dict[str, str] = {}

    def decode(self, refs: list[ImageRef]) -> dict[ImageRef, Image.Image]:
        decoded = {}
        for ref, image in zip(refs, _load_images([r.path for r in refs], self.broken)):
            if image is not None:
                decoded[ref] = image
                self.sizes[ref] = image.size
        return decoded

    def collect(self, stage: str, refs: list[ImageRef], outcome: "list[_FileResult] | str",
                results: dict[str, dict[ImageRef, Any]]) -> None:
        if isinstance(outcome, str):
            self.crashed[stage] = outcome
            return
        for ref, done in zip(refs, outcome):
            if done.error is not None:
                self.broken[ref.path] = done.error
            else:
                self.sizes[ref] = done.size
                results[stage][ref] = done.value

    def failure(self, stage: str, group: list[ImageRef]) -> str | None:
        missing = [r.path for r in group if r.path in self.broken]
        if missing:
            return f"derived image missing or unreadable: {self.broken[missing[0]]}"
        return self.crashed.get(stage)


def one_pass_serves_both(embed: Any, tags: Any) -> bool:
    """True when `embed.run_with_tags` computes both stages from one MobileNetV2 pass (same weights, device)."""
    return hasattr(embed, "shares_backbone") and embed.shares_backbone(tags)


def _run_local_models(models: dict[str, Any], decoded: dict[ImageRef, Image.Image],
                      wanted: dict[str, list[ImageRef]], results: dict[str, dict[ImageRef, Any]]) -> None:
    """The stages that run in this process over decoded images; MobileNetV2 once when it serves embed and tags."""
    wanted = {stage: refs for stage, refs in wanted.items() if refs}
    embed, tags = models.get("embed"), models.get("tags")
    shared = "embed" in wanted and wanted["embed"] == wanted.get("tags") and one_pass_serves_both(embed, tags)
    if shared:
        vecs, labels = embed.run_with_tags([decoded[r] for r in wanted["embed"]], tags)
        results["embed"].update(zip(wanted["embed"], vecs))
        results["tags"].update(zip(wanted["tags"], labels))
    for stage, refs in wanted.items():
        if not (shared and stage in ("embed", "tags")):
            results[stage].update(zip(refs, models[stage].run([decoded[r] for r in refs])))


@dataclass(frozen=True)
class _FileResult:
    """One file's result from a worker: the model's output and the image size, or why it could not be read."""

    size: tuple[int, int] = (0, 0)
    value: Any = None
    error: str | None = None


def _analyze_files(model: Any, paths: list[str]) -> list[_FileResult]:
    """In a worker: decode these derived images and run the model (its weights load once per process)."""
    broken: dict[str, str] = {}
    images = _load_images(paths, broken)
    readable = [image for image in images if image is not None]
    values = iter(model.run(readable) if readable else [])
    return [_FileResult(error=broken[path]) if image is None else _FileResult(image.size, next(values))
            for path, image in zip(paths, images)]


@dataclass
class _Submitted:
    """Files handed to the workers for one stage of one batch: kept so they can be handed again to a new pool."""

    model: Any
    slices: list[list[str]]
    futures: list[Any]
    generation: int


class _FilePool:
    """Worker processes for analyzers that use one core each (dlib): they take each batch's files in small
    slices (a slow slice does not leave the other core idle) while this process does the torch work."""

    SLICE = 2  # images per worker task: small enough to balance the workers, large enough to batch descriptors

    def __init__(self, workers: int) -> None:
        from ingest.pipeline import new_worker_pool

        self.workers = max(1, workers)
        self._new = lambda: new_worker_pool(self.workers)
        self.pool = self._new()
        self.generation = 0

    def submit(self, model: Any, paths: list[str]) -> _Submitted:
        from concurrent.futures.process import BrokenProcessPool

        slices = [paths[i:i + self.SLICE] for i in range(0, len(paths), self.SLICE)]
        try:
            return _Submitted(model, slices, self._send(model, slices), self.generation)
        except BrokenProcessPool:  # an earlier batch's file killed a worker: `collect` sends these again
            return _Submitted(model, slices, [], -1)

    def _send(self, model: Any, slices: list[list[str]]) -> list[Any]:
        return [self.pool.submit(_analyze_files, model, paths) for paths in slices]

    def collect(self, work: _Submitted) -> "list[_FileResult] | str":
        """Every file's result, or why the worker process died (a native library crashed on one of them).

        The next batch's files are in flight beside this one's, so a crash may be theirs: the files are given
        once more, alone on a fresh pool, before this batch is blamed."""
        from concurrent.futures.process import BrokenProcessPool

        for _ in range(2):
            try:
                if work.generation != self.generation:  # sent to a pool that died since
                    work.futures, work.generation = self._send(work.model, work.slices), self.generation
                return [result for future in work.futures for result in future.result()]
            except BrokenProcessPool:
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool, self.generation = self._new(), self.generation + 1
        return "the analyzer crashed on one of these files (worker process died)"

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _load_images(paths: list[str], broken: dict[str, str]) -> list[Image.Image | None]:
    """Each image decoded as RGB, or None with the reason recorded in `broken` under its path."""
    images: list[Image.Image | None] = []
    for path in paths:
        try:
            with Image.open(path) as img:
                images.append(img.convert("RGB"))
        except (OSError, ValueError) as error:
            images.append(None)
            broken[path] = str(error)
    return images


def _write_tags(session: Session, ref: ImageRef, labels: list[tuple[str, float]], model_id: str,
                size: tuple[int, int]) -> None:
    for label, score in labels:
        session.add(Tag(media_id=ref.media_id, frame_id=ref.frame_id, label=label, score=float(score),
                        model=model_id))


def _write_faces(session: Session, ref: ImageRef, faces: list[Any], model_id: str, size: tuple[int, int]) -> None:
    width, height = size
    for face in faces:
        x, y, w, h = face.box
        session.add(Face(media_id=ref.media_id, frame_id=ref.frame_id, x=x / width, y=y / height, w=w / width,
                         h=h / height, score=float(face.score), quality=float(face.quality), model=model_id,
                         embedding=np.asarray(face.embedding, dtype=np.float32).tobytes()))


class _VectorWriter:
    """Collects image vectors with their filterable fields and upserts them to Milvus once per batch."""

    def __init__(self, library: Library, model: Any) -> None:
        from catalog.vectors import VectorStore

        self.library = library
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

    def close(self, refresh_snapshot: bool) -> None:
        """Release Milvus; after new vectors, bring search's numpy snapshot up to date now (reading only the
        new rows) rather than making the first search after an ingest read the collection back."""
        from catalog.vector_snapshot import refresh_vector_snapshot

        if not (refresh_snapshot and self.collection):
            self.store.close()
            return
        try:
            refresh_vector_snapshot(self.library, self.collection, store=self.store)
        except Exception as error:  # noqa: BLE001 - search rebuilds it lazily; the vectors are safely in Milvus
            log.warning("vector snapshot not refreshed (%s); the first search will rebuild it", error)
            self.store.close()


def _write_caption(session: Session, ref: ImageRef, text: str, model_id: str, size: tuple[int, int]) -> None:
    if text:
        session.add(Caption(media_id=ref.media_id, frame_id=ref.frame_id, text=text, model=model_id))


_WRITERS: dict[str, Callable[[Session, ImageRef, Any, str, tuple[int, int]], None]] = {
    "tags": _write_tags, "faces": _write_faces, "captions": _write_caption}
_TABLES: dict[str, Any] = {"tags": Tag, "faces": Face, "captions": Caption}
