"""The REST API: the same `tools/` functions the agent and the app use, over HTTP (FastAPI).

Files are only ever served by media id: every path comes from the catalog, never from the client, so no
request can name a file outside the library. When a token or a login is configured, everything but `/health`
needs it (bearer token, HTTP basic, or the app's own login cookie through `Auth.hooks`). Ingest runs in a
background thread of this process, because Milvus Lite lets one process at a time open the vectors; its
progress shows in `/api/status` and in Prometheus `/metrics`.
"""

from __future__ import annotations

import mimetypes
import os
import secrets
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Sequence

from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Path as PathParam, Query, Request, UploadFile
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPBasic, HTTPBearer
from pydantic import BaseModel, Field, ValidationError
from sqlmodel import select

from catalog.db import session_for
from catalog.models import Face, Frame, Media, Person, Task
from catalog.settings import Library

Size = Literal["small", "large"]
MAX_UPLOAD = 50 * 1024 * 1024  # an image to search by, not a library
_bearer = HTTPBearer(auto_error=False, description="`--token` given to `photo-engine serve`")
_basic = HTTPBasic(auto_error=False, description="`--auth USER:PASS`")


# --- auth --------------------------------------------------------------------------------------------------

class Auth:
    """Who may call the API: a bearer token, a user and password, or a hook (the app's login cookie)."""

    def __init__(self, token: str | None = None, basic: tuple[str, str] | None = None) -> None:
        self.token = token or None
        self.basic = basic
        self.hooks: list[Callable[[Request], bool]] = []

    @property
    def required(self) -> bool:
        return bool(self.token or self.basic)

    def password_ok(self, username: str, password: str) -> bool:
        """The app's login form: the `--auth` pair, or any user name with the token as password."""
        ok = False
        if self.basic:
            ok = _same(username, self.basic[0]) & _same(password, self.basic[1])
        if self.token:
            ok |= _same(password, self.token)
        return ok

    def allows(self, request: Request) -> bool:
        if not self.required:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token and _same(value.strip(), self.token):
            return True
        if scheme.lower() == "basic" and value:
            import base64
            import binascii

            try:
                user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return self.password_ok(user, password)
        return any(hook(request) for hook in self.hooks)

    def challenge(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="photo-engine"' if self.basic else "Bearer"}


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def require_auth(request: Request, _b: Any = Depends(_bearer), _u: Any = Depends(_basic)) -> None:
    """Dependency on every route but /health (the two schemes also document the auth in OpenAPI)."""
    auth: Auth = request.app.state.auth
    if not auth.allows(request):
        raise HTTPException(401, "authentication required: a bearer token or a user and password",
                            headers=auth.challenge())


# --- background ingest -------------------------------------------------------------------------------------

class IngestJob:
    """At most one ingest (or rescan) at a time, in a thread of this process, with live counters.

    The runner reports (done, failed, remaining) after each batch of a stage (extract, then each analyzer),
    counting from zero per stage; a stage ends when nothing remains, so a report after `remaining == 0` (or
    one where done+failed fell or remaining rose) belongs to the next stage.
    `done` is the files extracted (stage 1), `failed` the failures of every stage, and `stage_done`,
    `remaining`, `files_per_second` describe the stage running now. The final report replaces the estimates.
    """

    def __init__(self, library: Library, on_finish: Callable[[], None] | None = None) -> None:
        self.library = library
        self.on_finish = on_finish
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state: dict[str, Any] = {"running": False, "runs": 0}
        self._stage_start = 0.0
        self._last = (0, 0, 0)  # done, failed, remaining of the previous report
        self._failed_before = 0  # failures of finished stages

    @property
    def running(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def start(self, paths: Sequence[str | Path] = ()) -> dict[str, Any]:
        """Start a run (paths: folders to add; none: rescan every source). Raises IngestBusy if one runs."""
        from ingest.queue import IngestBusy, ingest_lock

        with self._lock:
            if self.running:
                raise IngestBusy("an ingest is already running in this server; see /api/status")
            with ingest_lock(self.library.lock_path):  # another process (the CLI) holds it: refuse now
                pass
            now = time.time()
            self._state = {"running": True, "runs": self._state.get("runs", 0) + 1, "started_at": now,
                           "finished_at": None, "paths": [str(p) for p in paths], "done": 0, "failed": 0,
                           "stage": 1, "stage_done": 0, "remaining": None, "files_per_second": 0.0,
                           "error": None, "report": None}
            self._stage_start, self._last, self._failed_before = time.monotonic(), (0, 0, 0), 0
            self._thread = threading.Thread(target=self._run, args=(list(paths),), name="photo-engine-ingest",
                                            daemon=True)
            self._thread.start()
        return self.snapshot()

    def _progress(self, done: int, failed: int, remaining: int) -> None:
        with self._lock:
            state = self._state
            last_done, last_failed, last_remaining = self._last
            handled = last_done + last_failed
            if handled and (last_remaining == 0 or remaining > last_remaining or done + failed < handled):
                self._failed_before += last_failed  # the last stage ended: this one counts from zero
                self._stage_start = time.monotonic()
                state["stage"] += 1
            self._last = (done, failed, remaining)
            if state["stage"] == 1:
                state["done"] = done
            state["failed"] = self._failed_before + failed
            state["stage_done"], state["remaining"] = done, remaining
            elapsed = time.monotonic() - self._stage_start
            state["files_per_second"] = round((done + failed) / elapsed, 2) if elapsed > 0 else 0.0

    def _run(self, paths: list[str]) -> None:
        from ingest.runner import ingest

        error, report = None, None
        try:
            report = ingest(self.library, paths, progress=self._progress).as_dict()
        except Exception as exc:  # noqa: BLE001 - the reason is shown to the user, the server keeps running
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if self.on_finish:
                self.on_finish()
        with self._lock:
            state = self._state
            state.update(running=False, finished_at=time.time(), error=error, report=report, remaining=0)
            if report:
                state.update(done=report["processed"], files_per_second=report["files_per_second"],
                             failed=report["failed"] + sum(a["failed"] for a in report["analyzers"].values()))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            state = dict(self._state)
        state["running"] = self.running
        return state


def _reopen_vectors() -> None:
    """The ingest's vector writer stops Milvus Lite's in-process server when done: drop the search client."""
    from tools import search

    try:
        search.close_stores()
    except Exception:  # noqa: BLE001 - a client whose server is gone may fail to close; it is dropped anyway
        search._STORES.clear()


# --- metrics -----------------------------------------------------------------------------------------------

def _metrics_registry(library: Library, job: IngestJob):  # type: ignore[no-untyped-def]
    """A registry per API whose collector reads the catalog and the ingest job at scrape time."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    class LibraryCollector(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            from sqlalchemy import func

            active = Media.state == "active"
            with session_for(library.database_url) as session:
                tasks = session.exec(select(Task.stage, Task.status, func.count()).join(Media).where(active)
                                     .group_by(Task.stage, Task.status)).all()
                kinds = session.exec(select(Media.kind, func.count()).where(active).group_by(Media.kind)).all()
                failed_files = session.exec(select(func.count(func.distinct(Task.media_id))).join(Media)
                                            .where(active, Task.status == "failed")).one()
            depth = GaugeMetricFamily("photo_engine_queue_depth", "Tasks waiting or running, per stage.",
                                      labels=["stage"])
            by_status = GaugeMetricFamily("photo_engine_tasks", "Tasks per stage and status.",
                                          labels=["stage", "status"])
            waiting: dict[str, int] = {}
            for stage, status, n in tasks:
                by_status.add_metric([stage, status], n)
                if status in ("pending", "running"):
                    waiting[stage] = waiting.get(stage, 0) + n
            for stage in sorted({s for s, _, _ in tasks}):
                depth.add_metric([stage], waiting.get(stage, 0))
            yield depth
            yield by_status
            yield GaugeMetricFamily("photo_engine_failed_files", "Files with a failed stage (see /api/status).",
                                    value=failed_files)
            media = GaugeMetricFamily("photo_engine_media", "Files in the library.", labels=["kind"])
            for kind, n in kinds:
                media.add_metric([kind], n)
            yield media
            state = job.snapshot()
            yield GaugeMetricFamily("photo_engine_ingest_running", "1 while an ingest runs in this server.",
                                    value=int(state["running"]))
            yield GaugeMetricFamily("photo_engine_ingest_files_done", "Files extracted by the running or last ingest.",
                                    value=state.get("done", 0))
            yield GaugeMetricFamily("photo_engine_ingest_files_failed",
                                    "Stage failures in the running or last ingest.", value=state.get("failed", 0))
            yield GaugeMetricFamily("photo_engine_ingest_files_per_second",
                                    "Rate of the running (or last) ingest stage.",
                                    value=state.get("files_per_second", 0.0))
            yield CounterMetricFamily("photo_engine_ingest_runs", "Ingests started by this server.",
                                      value=state.get("runs", 0))

    registry = CollectorRegistry(auto_describe=False)
    registry.register(LibraryCollector())
    return registry


# --- request bodies and helpers ------------------------------------------------------------------------------

class NameBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class MergeBody(BaseModel):
    keep: int = Field(ge=1, description="person id that stays")
    other: int = Field(ge=1, description="person id merged into `keep`")


class IngestBody(BaseModel):
    paths: list[str] = Field(default_factory=list, max_length=50,
                             description="folders to add (only when the server allows it); none: rescan")


class AskBody(BaseModel):
    question: str = Field(min_length=1, max_length=500)
    media_id: Optional[int] = Field(default=None, ge=1, description="a library file for 'more like this'")


def _problem(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in error.errors()[:5])
    return str(error.args[0]) if error.args else str(error)


def active_media(library: Library, media_id: int) -> Media:
    """The catalog row of a file still in the library, or 404."""
    with session_for(library.database_url) as session:
        media = session.get(Media, media_id)
        if media is None or media.state != "active":
            raise HTTPException(404, f"no media with id {media_id}")
        session.expunge(media)
        return media


def preview_path(library: Library, media: Media, size: str = "small", frame_index: int | None = None) -> Path | None:
    """The derived image of a file: its thumbnail, or a video's keyframe (by index; default the first)."""
    if not media.content_hash:
        return None
    if media.kind != "video":
        path = library.thumb_path(media.content_hash, size)
        return path if path.is_file() else None
    with session_for(library.database_url) as session:
        query = select(Frame).where(Frame.media_id == media.id)
        query = query.where(Frame.idx == frame_index) if frame_index is not None else query.order_by(Frame.idx)
        frame = session.exec(query).first()
    if frame is None:
        return None
    path = library.frame_path(media.content_hash, int(round(frame.time * 1000)), size)
    return path if path.is_file() else None


def nearest_frame_index(library: Library, media_id: int, seconds: float | None) -> int | None:
    """The keyframe closest to a time (a video result's matched moment)."""
    with session_for(library.database_url) as session:
        frames = session.exec(select(Frame.idx, Frame.time).where(Frame.media_id == media_id)).all()
    if not frames:
        return None
    return min(frames, key=lambda f: abs(f[1] - (seconds or 0.0)))[0]


def people_on(library: Library, media_id: int) -> list[dict[str, Any]]:
    """People whose faces are on a file (named or not)."""
    with session_for(library.database_url) as session:
        rows = session.exec(select(Person.id, Person.name).join(Face, Face.person_id == Person.id)
                            .where(Face.media_id == media_id).distinct()).all()
    return [{"person_id": pid, "name": name} for pid, name in rows]


def face_crop(library: Library, face_id: int, side: int = 160):  # type: ignore[no-untyped-def]
    """A square crop around one face, cut from the image the face analyzer saw (large thumbnail or keyframe)."""
    from PIL import Image

    with session_for(library.database_url) as session:
        face = session.get(Face, face_id)
        if face is None:
            return None
        media = session.get(Media, face.media_id)
        frame = session.get(Frame, face.frame_id) if face.frame_id else None
    if media is None or not media.content_hash:
        return None
    path = (library.frame_path(media.content_hash, int(round(frame.time * 1000)), "large") if frame
            else library.thumb_path(media.content_hash, "large"))
    if not path.is_file():
        return None
    with Image.open(path) as image:
        width, height = image.size
        cx, cy = (face.x + face.w / 2) * width, (face.y + face.h / 2) * height
        half = max(face.w * width, face.h * height) * 0.8
        box = (int(max(0, cx - half)), int(max(0, cy - half)), int(min(width, cx + half)), int(min(height, cy + half)))
        crop = image.convert("RGB").crop(box)
    crop.thumbnail((side, side))
    return crop


def sample_faces(library: Library, person_id: int, limit: int = 4) -> list[int]:
    """A few of a person's faces, the best first (score × quality)."""
    with session_for(library.database_url) as session:
        return list(session.exec(select(Face.id).where(Face.person_id == person_id)
                                 .order_by((Face.score + Face.quality).desc(), Face.id).limit(limit)).all())


def with_urls(item: dict[str, Any]) -> dict[str, Any]:
    """A search result plus the API links to see it (thumbnail; the original, at the matched time for videos)."""
    media_id = item["media_id"]
    original = f"/api/media/{media_id}/original"
    if item.get("frame_time") is not None:
        original += f"#t={float(item['frame_time']):.2f}"
    return {**item, "thumbnail_url": f"/api/media/{media_id}/thumbnail", "original_url": original}


# --- the app -----------------------------------------------------------------------------------------------

def create_api(library: Library, token: str | None = None, basic_auth: tuple[str, str] | None = None,
               allow_new_sources: bool = False, llm: Any = None) -> FastAPI:
    """The FastAPI app over one library. `allow_new_sources`: POST /api/ingest may add folders (local use);
    `llm`: the agent's chat model (None: models.yaml's, False: answers from tool results only)."""
    app = FastAPI(title="VLM Photo Engine", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None,
                  description="Search, browse and ask about a private photo and video library. "
                              "Files are addressed by media id only.")
    app.state.library = library
    app.state.auth = Auth(token, basic_auth)
    app.state.ingest = IngestJob(library, on_finish=_reopen_vectors)
    app.state.allow_new_sources = allow_new_sources
    app.state.llm = llm
    app.state.agent = None
    registry = _metrics_registry(library, app.state.ingest)
    guarded = APIRouter(dependencies=[Depends(require_auth)])

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness, no auth: says nothing about the library."""
        return {"ok": True}

    @guarded.get("/metrics", tags=["service"], response_class=Response)
    def metrics() -> Response:
        """Prometheus text format: queue depth, ingest files done/failed and files/s, failures."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @guarded.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @guarded.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="VLM Photo Engine API")

    @guarded.get("/api/search", tags=["search"])
    def search(text: Annotated[Optional[str], Query(max_length=500, description="what to look for")] = None,
               kind: Optional[Literal["photo", "video"]] = None,
               date_from: Optional[date] = None, date_to: Optional[date] = None,
               year: Annotated[Optional[int], Query(ge=1800, le=2200)] = None,
               month: Annotated[Optional[int], Query(ge=1, le=12)] = None,
               place: Annotated[Optional[str], Query(max_length=200)] = None,
               person: Annotated[Optional[str], Query(max_length=200)] = None,
               camera: Annotated[Optional[str], Query(max_length=200)] = None,
               limit: Annotated[int, Query(ge=1, le=200)] = 20,
               sort: Literal["relevance", "newest", "oldest"] = "relevance") -> dict[str, Any]:
        """Text → photos and videos (filters inside the search); no text: filters alone, newest first."""
        return _search(library, text=text, kind=kind, date_from=date_from, date_to=date_to, year=year,
                       month=month, place=place, person=person, camera=camera, limit=limit, sort=sort)

    @guarded.get("/api/similar/{media_id}", tags=["search"])
    def similar(media_id: Annotated[int, PathParam(ge=1)], kind: Optional[Literal["photo", "video"]] = None,
                limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict[str, Any]:
        """Files that look like this library file, itself excluded."""
        media = active_media(library, media_id)
        return _search(library, image=os.fsdecode(media.path_bytes), kind=kind, limit=limit)

    @guarded.post("/api/similar", tags=["search"])
    def similar_upload(file: Annotated[UploadFile, File(description="an image")],
                       kind: Optional[Literal["photo", "video"]] = None,
                       limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict[str, Any]:
        """Files that look like an uploaded image (kept only for the search, then deleted)."""
        suffix = Path(file.filename or "").suffix.lower()[:8] if file.filename else ""
        with tempfile.TemporaryDirectory(prefix="photo-engine-upload-") as folder:
            target = Path(folder) / f"query{suffix if suffix.isascii() and suffix[1:].isalnum() else ''}"
            size = 0
            with open(target, "wb") as out:
                while chunk := file.file.read(1 << 20):
                    size += len(chunk)
                    if size > MAX_UPLOAD:
                        raise HTTPException(413, f"an image to search by is at most {MAX_UPLOAD >> 20} MB")
                    out.write(chunk)
            if size == 0:
                raise HTTPException(422, "the upload is empty")
            return _search(library, image=str(target), kind=kind, limit=limit)

    @guarded.get("/api/media/{media_id}", tags=["media"])
    def media(media_id: Annotated[int, PathParam(ge=1)]) -> dict[str, Any]:
        """Everything the catalog knows of one file, with the people on it and links to its images."""
        from tools.library import media_info

        active_media(library, media_id)
        info = media_info(library, media_id)
        if info is None:
            raise HTTPException(404, f"no media with id {media_id}")
        info["people"] = people_on(library, media_id)
        info["thumbnail_url"] = f"/api/media/{media_id}/thumbnail"
        info["original_url"] = f"/api/media/{media_id}/original"
        for frame in info["frames"]:
            frame["url"] = f"/api/media/{media_id}/frames/{frame['index']}"
        return info

    @guarded.get("/api/media/{media_id}/thumbnail", tags=["media"], response_class=FileResponse)
    def thumbnail(media_id: Annotated[int, PathParam(ge=1)], size: Size = "small") -> FileResponse:
        """A photo's thumbnail, or a video's first keyframe (WebP)."""
        path = preview_path(library, active_media(library, media_id), size)
        if path is None:
            raise HTTPException(404, f"media {media_id} has no thumbnail yet")
        return _image(path)

    @guarded.get("/api/media/{media_id}/frames/{index}", tags=["media"], response_class=FileResponse)
    def frame(media_id: Annotated[int, PathParam(ge=1)], index: Annotated[int, PathParam(ge=0, le=100_000)],
              size: Size = "small") -> FileResponse:
        """One kept keyframe of a video (WebP), by its index in `/api/media/{id}`'s frames."""
        media = active_media(library, media_id)
        if media.kind != "video":
            raise HTTPException(404, f"media {media_id} is not a video")
        path = preview_path(library, media, size, frame_index=index)
        if path is None:
            raise HTTPException(404, f"media {media_id} has no keyframe {index}")
        return _image(path)

    @guarded.get("/api/media/{media_id}/original", tags=["media"], response_class=FileResponse)
    def original(media_id: Annotated[int, PathParam(ge=1)]) -> FileResponse:
        """The original file, streamed with range requests (videos seek to `#t=SECONDS`)."""
        media = active_media(library, media_id)
        path = os.fsdecode(media.path_bytes)
        if not os.path.isfile(path):
            raise HTTPException(404, f"the original of media {media_id} is gone (moved or on an unplugged disk?)")
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return FileResponse(path, media_type=kind, headers={"Cache-Control": "private, max-age=3600"},
                            content_disposition_type="inline", filename=Path(path).name)

    @guarded.get("/api/people", tags=["people"])
    def people(limit: Annotated[Optional[int], Query(ge=1, le=10_000)] = None) -> dict[str, Any]:
        """People found by face clustering, most faces first, with sample face links."""
        from tools.people_tools import list_people

        rows = list_people(library, limit=limit)
        for row in rows:
            row["media_count"] = len(row.pop("media", []))
            row["sample_faces"] = [f"/api/faces/{fid}" for fid in sample_faces(library, row["person_id"])]
        return {"people": rows}

    @guarded.get("/api/faces/{face_id}", tags=["people"], response_class=Response)
    def face(face_id: Annotated[int, PathParam(ge=1)]) -> Response:
        """A crop of one detected face (JPEG)."""
        import io

        crop = face_crop(library, face_id)
        if crop is None:
            raise HTTPException(404, f"no face {face_id}")
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=85)
        return Response(buffer.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"})

    @guarded.post("/api/people/{person_id}/name", tags=["people"])
    def name(person_id: Annotated[int, PathParam(ge=1)], body: NameBody) -> dict[str, Any]:
        """Name or rename a person (the name survives re-clustering)."""
        from tools.people_tools import name_person

        try:
            return name_person(library, person_id, body.name)
        except KeyError as error:
            raise HTTPException(404, _problem(error)) from None
        except ValueError as error:
            raise HTTPException(422, _problem(error)) from None

    @guarded.post("/api/people/merge", tags=["people"])
    def merge(body: MergeBody) -> dict[str, Any]:
        """Move every face of `other` into `keep`."""
        from tools.people_tools import merge_people

        try:
            return merge_people(library, body.keep, body.other)
        except LookupError as error:
            raise HTTPException(404, _problem(error)) from None

    @guarded.get("/api/stats", tags=["stats"])
    def stats(by: Literal["year", "month"] = "year", kind: Optional[Literal["photo", "video"]] = None,
              date_from: Optional[date] = None, date_to: Optional[date] = None,
              year: Annotated[Optional[int], Query(ge=1800, le=2200)] = None,
              place: Annotated[Optional[str], Query(max_length=200)] = None,
              person: Annotated[Optional[str], Query(max_length=200)] = None) -> dict[str, Any]:
        """Counts, a timeline and places, under the same filters as search."""
        from tools.stats import count_media, places, timeline

        filters = {k: v for k, v in dict(kind=kind, date_from=date_from, date_to=date_to, year=year, place=place,
                                         person=person).items() if v is not None}
        try:
            return {"count": count_media(library, **filters), "timeline": timeline(library, by=by, **filters),
                    "places": places(library, **filters)}
        except (ValidationError, ValueError) as error:
            raise HTTPException(422, _problem(error)) from None

    @guarded.get("/api/status", tags=["ingest"])
    def status() -> dict[str, Any]:
        """Library counts, failed files with reasons, and the running (or last) ingest's progress."""
        return library_state(app)

    @guarded.post("/api/ingest", tags=["ingest"], status_code=202)
    def start_ingest(body: Optional[IngestBody] = None) -> dict[str, Any]:
        """Start a rescan of every source (or add folders, when allowed) in the background."""
        paths = (body.paths if body else []) or []
        if paths and not app.state.allow_new_sources:
            raise HTTPException(403, "adding folders over the API is off for this server; rescan only, or run "
                                     "`photo-engine ingest FOLDER` on the machine")
        for folder in paths:
            if not Path(folder).is_dir():
                raise HTTPException(422, f"not a folder: {folder[:200]}")
        return start_ingest_job(app, paths)

    @guarded.post("/api/ask", tags=["assistant"])
    def ask(body: AskBody) -> dict[str, Any]:
        """One question to the assistant: {answer, media: [...], tool_calls: [...]}."""
        image = None
        if body.media_id is not None:
            image = str(active_media(library, body.media_id).id)
        result = agent_for(app).ask(body.question, image=image)
        result["media"] = [with_urls(item) for item in result.get("media", [])]
        return result

    app.include_router(guarded)
    return app


def _search(library: Library, **arguments: Any) -> dict[str, Any]:
    """Run the search tool; bad input is a 422 with the reason, warnings (e.g. unknown person) pass through."""
    from tools.search import search

    try:
        outcome = search(library, **arguments)
    except (ValidationError, ValueError) as error:
        raise HTTPException(422, _problem(error)) from None
    return {"results": [with_urls(row) for row in outcome.results], "warnings": outcome.warnings}


def _image(path: Path) -> FileResponse:
    media_type = "image/jpeg" if path.suffix == ".jpg" else "image/webp"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})


def start_ingest_job(app: FastAPI, paths: Sequence[str] = ()) -> dict[str, Any]:
    """Start the background ingest, or 409 with the reason (one is running here, or the CLI holds the lock)."""
    from ingest.queue import IngestBusy

    try:
        return app.state.ingest.start(paths)
    except IngestBusy as error:
        raise HTTPException(409, str(error)) from None


def library_state(app: FastAPI) -> dict[str, Any]:
    """`library_status` without opening the vectors (that would stop the search's Milvus Lite server)."""
    from tools.library import library_status
    from tools.search import _STORES

    library: Library = app.state.library
    data = library_status(library, check_vectors=False)
    store = _STORES.get(library.milvus_uri)
    if store is not None and "client" in store.__dict__:
        reachable, detail = store.health()
        data["health"]["vectors"] = "ok" if reachable else f"unreachable: {detail}"
    else:
        data["health"]["vectors"] = "not opened yet (opened by the first search)"
    data["ingest"] = app.state.ingest.snapshot()
    return data


def agent_for(app: FastAPI) -> Any:
    """One agent per server, created on first use (it keeps the LLM loaded)."""
    if app.state.agent is None:
        from assistant.agent import Agent

        app.state.agent = Agent(app.state.library, llm=app.state.llm)
    return app.state.agent
