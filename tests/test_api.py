"""The REST API over a real small library (tests/data, offline profile: vectors + MobileNet tags), via TestClient.

Covers auth (token, basic, /health open), files served by id only (thumbnails, keyframes, originals with
ranges; 404 for unknown ids; no way to name a path), search/similar/ask, people naming and merging, stats,
a background rescan visible in /api/status and /metrics, and the serve/chat refusals and offline share line.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import DATA, run_cli

TOKEN = "t0k3n-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LABEL_CACHE_KEY = "photo-engine-search-labels"  # shared with test_search: MiniLM label vectors, computed once


def warm_up() -> threading.Thread:
    """Load the search's text encoder while the ingest decodes files (2 cores): the first search is then quick."""
    def load() -> None:
        from tools.search import default_models

        default_models().text_encoder().encode(["warm up"])

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    return thread


def build_library(root: Path, request: pytest.FixtureRequest, analyzers: str, subdirs: tuple[str, ...]) -> Path:
    """Ingest copies of tests/data folders; reuse the cached tag-label vectors."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # module fixtures run before conftest's per-test env
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    warming = warm_up()
    src = root / "src"
    for sub in subdirs:
        shutil.copytree(DATA / sub, src / sub)
    for path in src.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    library_dir = root / "lib"
    before = os.environ.get("PHOTO_ENGINE_ANALYZERS")
    os.environ["PHOTO_ENGINE_ANALYZERS"] = analyzers
    try:  # in-process (as the server's Library page runs it): the models stay loaded for the searches
        from catalog.settings import Library
        from ingest.runner import ingest

        report = ingest(Library.at(library_dir), [src]).as_dict()
    finally:
        os.environ["PHOTO_ENGINE_ANALYZERS"] = before if before is not None else "none"
    assert report["analyzers"]["tags"]["done"] > 0, report
    cache = Path(request.config.cache.mkdir(LABEL_CACHE_KEY))
    (library_dir / "cache").mkdir(exist_ok=True)
    for npy in cache.glob("*.npy"):
        shutil.copy(npy, library_dir / "cache" / npy.name)
    warming.join()
    return src


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    from catalog.db import session_for
    from catalog.models import Face, Person
    from catalog.settings import Library
    from tools.library import find_media

    root = tmp_path_factory.mktemp("api")
    src = build_library(root, request, "embed,tags", ("photos", "videos", "faces"))
    library = Library.at(root / "lib")
    with session_for(library.database_url) as session:  # two people by hand (faces analyzer not needed here)
        grace, other = Person(), Person()
        session.add(grace)
        session.add(other)
        session.flush()
        portrait = find_media(session, str(src / "faces" / "mpl_grace_hopper.jpg"))
        group = find_media(session, str(src / "faces" / "insightface_t1.jpg"))
        session.add(Face(media_id=portrait.id, person_id=grace.id, x=0.3, y=0.2, w=0.3, h=0.3, score=0.9))
        session.add(Face(media_id=group.id, person_id=other.id, x=0.1, y=0.1, w=0.1, h=0.1, score=0.8))
        session.commit()
    yield library, src
    for npy in (library.root / "cache").glob("*.npy"):
        shutil.copy(npy, Path(request.config.cache.mkdir(LABEL_CACHE_KEY)) / npy.name)
    from tools.search import close_stores

    close_stores()


@pytest.fixture(scope="module")
def client(lib):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from assistant.api import create_api

    library, _ = lib
    with TestClient(create_api(library, token=TOKEN, llm=False)) as test_client:
        yield test_client


def _id(client, src: Path, relative: str) -> int:  # type: ignore[no-untyped-def]
    from catalog.db import session_for
    from tools.library import find_media

    with session_for(client.app.state.library.database_url) as session:
        return find_media(session, str(src / relative)).id


# --- auth ---------------------------------------------------------------------------------------------------

def test_health_is_open_and_everything_else_needs_the_token(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/health").json() == {"ok": True}
    for url in ("/metrics", "/openapi.json", "/docs", "/api/status", "/api/search?text=cat", "/api/people",
                "/api/media/1", "/api/media/1/thumbnail", "/api/media/1/original", "/api/stats"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + base64.b64encode(b"u:x").decode()}):
            response = client.get(url, headers=headers)
            assert response.status_code == 401, (url, headers, response.status_code)
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.post("/api/ingest").status_code == 401
    assert client.post("/api/ask", json={"question": "cats"}).status_code == 401
    assert client.get("/api/status", headers=AUTH).status_code == 200


def test_basic_auth_and_no_auth_configurations(lib) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from assistant.api import create_api

    library, _ = lib
    basic = TestClient(create_api(library, basic_auth=("ann", "pa:ss"), llm=False))
    assert basic.get("/api/people").status_code == 401
    assert basic.get("/api/people").headers["www-authenticate"].startswith("Basic")
    assert basic.get("/api/people", auth=("ann", "wrong")).status_code == 401
    assert basic.get("/api/people", auth=("ann", "pa:ss")).status_code == 200
    assert basic.get("/api/people", headers={"Authorization": "Basic !!notbase64"}).status_code == 401
    assert TestClient(create_api(library, llm=False)).get("/api/people").status_code == 200  # localhost default


def test_openapi_schema_lists_the_routes_and_the_auth_schemes(client) -> None:  # type: ignore[no-untyped-def]
    schema = client.get("/openapi.json", headers=AUTH).json()
    for path in ("/api/search", "/api/similar/{media_id}", "/api/similar", "/api/media/{media_id}",
                 "/api/media/{media_id}/thumbnail", "/api/media/{media_id}/frames/{index}",
                 "/api/media/{media_id}/original", "/api/people", "/api/people/merge", "/api/stats",
                 "/api/status", "/api/ingest", "/api/ask", "/metrics", "/health"):
        assert path in schema["paths"], path
    assert {"HTTPBearer", "HTTPBasic"} <= set(schema["components"]["securitySchemes"])
    assert "swagger" in client.get("/docs", headers=AUTH).text.lower()


# --- search -------------------------------------------------------------------------------------------------

def test_search_by_text_with_links_and_validated_filters(client) -> None:  # type: ignore[no-untyped-def]
    data = client.get("/api/search", params={"text": "a cat", "limit": 5}, headers=AUTH).json()
    top = data["results"][0]
    assert Path(top["path"]).name == "skimage_chelsea.png" and "cat" in top["why"]
    assert top["thumbnail_url"] == f"/api/media/{top['media_id']}/thumbnail"
    videos = client.get("/api/search", params={"kind": "video"}, headers=AUTH).json()["results"]
    assert len(videos) == 3 and {r["kind"] for r in videos} == {"video"}
    for bad in ({"limit": 0}, {"limit": 5000}, {"kind": "audio"}, {"month": 13}, {"date_from": "yesterday"},
                {"sort": "random"}, {"text": "x" * 501}):
        assert client.get("/api/search", params=bad, headers=AUTH).status_code == 422, bad
    unknown = client.get("/api/search", params={"person": "Nobody At All"}, headers=AUTH).json()
    assert unknown["results"] == [] and unknown["warnings"]


def test_similar_by_id_and_by_upload(client, lib) -> None:  # type: ignore[no-untyped-def]
    _, src = lib
    rocket = _id(client, src, "photos/skimage_rocket.jpg")
    results = client.get(f"/api/similar/{rocket}", headers=AUTH).json()["results"]
    assert results and rocket not in [r["media_id"] for r in results]
    photo = Image.open(DATA / "photos" / "skimage_rocket.jpg").convert("RGB")
    w, h = photo.size
    buffer = io.BytesIO()
    photo.crop((w // 30, h // 30, w - w // 30, h - h // 30)).save(buffer, "JPEG", quality=70)  # a re-saved crop
    uploaded = client.post("/api/similar", files={"file": ("query.jpg", buffer.getvalue(), "image/jpeg")}, headers=AUTH)
    assert uploaded.status_code == 200
    assert uploaded.json()["results"][0]["media_id"] == rocket
    assert client.post("/api/similar", files={"file": ("x.jpg", b"", "image/jpeg")}, headers=AUTH).status_code == 422
    assert client.get("/api/similar/999999", headers=AUTH).status_code == 404


# --- files by id --------------------------------------------------------------------------------------------

def test_media_info_thumbnails_and_keyframes_by_id(client, lib) -> None:  # type: ignore[no-untyped-def]
    _, src = lib
    cat = _id(client, src, "photos/skimage_chelsea.png")
    info = client.get(f"/api/media/{cat}", headers=AUTH).json()
    assert info["kind"] == "photo" and any("cat" in t["label"] for t in info["tags"]) and info["people"] == []
    small = client.get(f"/api/media/{cat}/thumbnail", headers=AUTH)
    large = client.get(f"/api/media/{cat}/thumbnail?size=large", headers=AUTH)
    assert small.headers["content-type"] == "image/webp" and large.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(small.content)).size) < max(Image.open(io.BytesIO(large.content)).size)
    video = _id(client, src, "videos/imageio_realshort.mp4")
    frames = client.get(f"/api/media/{video}", headers=AUTH).json()["frames"]
    assert frames and frames[0]["url"] == f"/api/media/{video}/frames/0"
    frame = client.get(frames[-1]["url"] + "?size=large", headers=AUTH)
    assert frame.status_code == 200 and Image.open(io.BytesIO(frame.content)).format == "JPEG"
    assert frame.headers["content-type"] == "image/jpeg"
    assert client.get(f"/api/media/{video}/thumbnail", headers=AUTH).status_code == 200  # first keyframe
    assert client.get(f"/api/media/{video}/frames/9999", headers=AUTH).status_code == 404
    assert client.get(f"/api/media/{cat}/frames/0", headers=AUTH).status_code == 404  # a photo has none
    assert client.get(f"/api/media/{cat}/thumbnail?size=huge", headers=AUTH).status_code == 422


def test_unknown_ids_are_404(client) -> None:  # type: ignore[no-untyped-def]
    for url in ("/api/media/999999", "/api/media/999999/thumbnail", "/api/media/999999/frames/0",
                "/api/media/999999/original", "/api/faces/999999"):
        assert client.get(url, headers=AUTH).status_code == 404, url
    assert client.post("/api/people/999999/name", json={"name": "X"}, headers=AUTH).status_code == 404


def test_originals_stream_by_id_with_ranges(client, lib) -> None:  # type: ignore[no-untyped-def]
    _, src = lib
    video = _id(client, src, "videos/imageio_cockatoo.mp4")
    whole = client.get(f"/api/media/{video}/original", headers=AUTH)
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    assert whole.content == (src / "videos" / "imageio_cockatoo.mp4").read_bytes()
    part = client.get(f"/api/media/{video}/original", headers={**AUTH, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]


def test_no_request_can_name_a_path(client, lib) -> None:  # type: ignore[no-untyped-def]
    _, src = lib
    cat = _id(client, src, "photos/skimage_chelsea.png")
    secret = Path("/etc/passwd").read_bytes() if Path("/etc/passwd").exists() else b"root:"
    for url in (f"/api/media/{cat}/original?path=/etc/passwd", "/api/media/..%2F..%2F..%2Fetc%2Fpasswd/original",
                f"/api/media/{cat}/..%2F..%2F..%2F..%2Fetc%2Fpasswd", f"/api/media/{cat}/../../../../etc/passwd",
                f"/api/media/{cat}/thumbnail?size=..%2F..%2Fetc%2Fpasswd", f"/api/media/{cat}/frames/..%2Fx",
                "/api/media/%2Fetc%2Fpasswd/original", f"/api/similar/{cat}?image=/etc/passwd",
                "/api/search?image=/etc/passwd", "/api/media/-1/original", "/api/media/1e3/original"):
        response = client.get(url, headers=AUTH)
        assert secret[:40] not in response.content, url
        assert response.status_code in (200, 404, 422), (url, response.status_code)
        if response.status_code == 200 and "original" in url:
            assert response.content == (src / "photos" / "skimage_chelsea.png").read_bytes()
    results = client.get("/api/search?image=/etc/passwd", headers=AUTH).json()["results"]
    assert all(r["score"] is None for r in results)  # `image` is not a search parameter here: filters alone


# --- people, stats, ask -------------------------------------------------------------------------------------

def test_people_list_name_merge(client) -> None:  # type: ignore[no-untyped-def]
    people = client.get("/api/people", headers=AUTH).json()["people"]
    assert len(people) == 2 and all(p["media_count"] == 1 and p["sample_faces"] for p in people)
    face = client.get(people[0]["sample_faces"][0], headers=AUTH)
    assert face.headers["content-type"] == "image/jpeg" and max(Image.open(io.BytesIO(face.content)).size) <= 160
    first, second = people[0]["person_id"], people[1]["person_id"]
    named = client.post(f"/api/people/{first}/name", json={"name": "Grace"}, headers=AUTH)
    assert named.json() == {"person_id": first, "name": "Grace"}
    assert client.post(f"/api/people/{first}/name", json={"name": ""}, headers=AUTH).status_code == 422
    assert client.get("/api/search", params={"person": "grace"}, headers=AUTH).json()["results"]
    merged = client.post("/api/people/merge", json={"keep": first, "other": second}, headers=AUTH).json()
    assert merged["merged"] == second and merged["name"] == "Grace"
    people = client.get("/api/people", headers=AUTH).json()["people"]
    assert [(p["name"], p["faces"], p["media_count"]) for p in people] == [("Grace", 2, 2)]
    assert client.post("/api/people/merge", json={"keep": first, "other": 999}, headers=AUTH).status_code == 404


def test_stats(client) -> None:  # type: ignore[no-untyped-def]
    data = client.get("/api/stats", headers=AUTH).json()
    assert data["count"] == {"total": 9, "photo": 6, "video": 3}
    assert sum(p["count"] for p in data["timeline"]["periods"]) + data["timeline"]["undated"] == 9
    assert client.get("/api/stats", params={"kind": "video"}, headers=AUTH).json()["count"]["total"] == 3
    assert client.get("/api/stats", params={"by": "week"}, headers=AUTH).status_code == 422


def test_ask_returns_the_answer_with_its_media(client) -> None:  # type: ignore[no-untyped-def]
    data = client.post("/api/ask", json={"question": "photos of a cat"}, headers=AUTH).json()
    assert data["answer"] and data["tool_calls"]
    assert Path(data["media"][0]["path"]).name == "skimage_chelsea.png"
    assert data["media"][0]["thumbnail_url"].startswith("/api/media/")
    assert client.post("/api/ask", json={"question": ""}, headers=AUTH).status_code == 422


# --- ingest and metrics -------------------------------------------------------------------------------------

def test_metrics_text_format(client) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics", headers=AUTH)
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in ("photo_engine_queue_depth", "photo_engine_tasks", "photo_engine_failed_files", "photo_engine_media",
                 "photo_engine_ingest_running", "photo_engine_ingest_files_done", "photo_engine_ingest_files_failed",
                 "photo_engine_ingest_files_per_second", "photo_engine_ingest_runs"):
        assert name in families, name
    media = {s.labels["kind"]: s.value for s in families["photo_engine_media"].samples}
    assert media == {"photo": 6.0, "video": 3.0}
    depth = {s.labels["stage"]: s.value for s in families["photo_engine_queue_depth"].samples}
    assert depth.get("extract") == 0.0


def test_rescan_runs_in_the_background_and_reports_progress(client, lib) -> None:  # type: ignore[no-untyped-def]
    from ingest.queue import ingest_lock

    library, src = lib
    assert client.post("/api/ingest", json={"paths": [str(src)]}, headers=AUTH).status_code == 403  # remote-safe
    with ingest_lock(library.lock_path):  # the CLI is ingesting: refused with the reason
        busy = client.post("/api/ingest", headers=AUTH)
    assert busy.status_code == 409 and "another ingest" in busy.json()["detail"]
    shutil.copy(DATA / "exif" / "pillow_flower.jpg", src / "photos" / "new_flower.jpg")
    started = client.post("/api/ingest", headers=AUTH)
    assert started.status_code == 202 and started.json()["runs"] == 1
    deadline = time.monotonic() + 60
    while (status := client.get("/api/status", headers=AUTH).json())["ingest"]["running"]:
        assert time.monotonic() < deadline, status["ingest"]
        time.sleep(0.3)
    run = status["ingest"]
    assert run["error"] is None and run["done"] >= 1 and run["report"]["scans"][0]["new"] == 1
    assert status["media"]["photo"] == 7
    text = client.get("/metrics", headers=AUTH).text
    assert "photo_engine_ingest_runs_total 1.0" in text and "photo_engine_ingest_running 0.0" in text
    assert f"photo_engine_ingest_files_done {float(run['done'])}" in text


def test_progress_counts_files_once_across_stages(tmp_path: Path) -> None:
    from assistant.api import IngestJob
    from catalog.settings import Library

    job = IngestJob(Library.at(tmp_path / "lib"))
    job._state.update(stage=1, done=0, failed=0)
    for report in [(16, 0, 20), (35, 1, 0),  # extract: 36 files, 1 failed
                   (16, 0, 19), (35, 0, 0),  # embed
                   (35, 0, 0),  # tags, one batch with the same counts
                   (20, 1, 14)]:  # faces, running
        job._progress(*report)
    state = job.snapshot()
    assert (state["stage"], state["done"], state["failed"], state["stage_done"], state["remaining"]) == (4, 35, 2, 20, 14)


# --- serve / chat commands ----------------------------------------------------------------------------------

def test_serve_and_chat_refuse_unsafe_setups(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from assistant.cli import app

    proc = run_cli("serve", "--host", "0.0.0.0", library=tmp_path / "lib", check=False, timeout=60)  # as a user would
    assert proc.returncode == 2 and "refusing to serve your library on 0.0.0.0 without a login" in proc.stderr
    cases = [(("chat", "--share"), "add --auth"), (("chat", "--host", "192.168.1.5"), "add --auth"),
             (("serve", "--host", "10.0.0.2", "--auth", "a"), "USER:PASS"), (("chat", "--auth", ":x"), "USER:PASS")]
    for args, message in cases:
        result = CliRunner().invoke(app, [*args, "--library", str(tmp_path / "lib")])
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_share_without_a_reachable_tunnel_says_so_and_keeps_serving(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import gradio.networking

    from assistant.cli_serve import is_local, start_share

    monkeypatch.setattr(gradio.networking, "GRADIO_API_SERVER", "http://127.0.0.1:9/tunnel-request")
    start_share(7860, "http://127.0.0.1:7860/")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("share link unavailable")
    assert "still serving locally at http://127.0.0.1:7860/" in lines[0]
    assert is_local("127.0.0.1") and is_local("localhost") and is_local("::1") and not is_local("0.0.0.0")
