"""The app in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright; never a downloaded browser).

One server (API + Gradio app, as `photo-engine chat` builds it) runs in a thread on a free localhost port over
a small real library (tests/data photos and videos, tag analyzer). Screenshots go to test-artifacts/; the
chat screenshot also becomes docs/screenshot-chat.png when that file is missing or
PHOTO_ENGINE_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import DATA, REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"
DOCS_SHOT = REPO / "docs" / "screenshot-chat.png"
PHONE = {"width": 390, "height": 844}
LABEL_CACHE_KEY = "photo-engine-search-labels"  # shared with test_search / test_api

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium); "
                                                              "this test never downloads a browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    from catalog.settings import Library

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # module fixtures run before conftest's per-test env
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    warming = threading.Thread(target=_warm_up, daemon=True)  # 2 cores: import gradio while the ingest runs
    warming.start()
    root = tmp_path_factory.mktemp("app")
    for sub in ("photos", "videos"):
        shutil.copytree(DATA / sub, root / "src" / sub)
    before = os.environ.get("PHOTO_ENGINE_ANALYZERS")
    os.environ["PHOTO_ENGINE_ANALYZERS"] = "tags"
    try:  # in-process (as the Library page runs it): the models stay loaded for the app's searches
        from ingest.runner import ingest

        report = ingest(Library.at(root / "lib"), [root / "src"]).as_dict()
    finally:
        os.environ["PHOTO_ENGINE_ANALYZERS"] = before if before is not None else "none"
    assert report["analyzers"]["tags"]["done"] == 6, report
    cache = Path(request.config.cache.mkdir(LABEL_CACHE_KEY))
    (root / "lib" / "cache").mkdir(exist_ok=True)
    for npy in cache.glob("*.npy"):
        shutil.copy(npy, root / "lib" / "cache" / npy.name)
    warming.join()
    yield Library.at(root / "lib")
    for npy in (root / "lib" / "cache").glob("*.npy"):
        shutil.copy(npy, cache / npy.name)


def _warm_up() -> None:
    import assistant.app  # noqa: F401 - gradio's import alone takes seconds
    from tools.search import default_models

    default_models().text_encoder().encode(["warm up"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def start_server(library) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """start(**create_server options) -> base URL; every server started is stopped after the module."""
    import uvicorn

    from assistant.app import create_server

    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**options: Any) -> str:
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_server(library, llm=False, **options), host="127.0.0.1",
                                               port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}/"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def app_url(start_server) -> str:  # type: ignore[no-untyped-def]
    return start_server()


def _shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def _ask(page: Any, question: str) -> list[Any]:
    page.fill("#pe-question textarea", question)
    page.click("#pe-ask")
    page.wait_for_selector("#pe-chat button.thumbnail-item img", timeout=60_000)
    page.wait_for_function("() => [...document.querySelectorAll('#pe-chat button.thumbnail-item img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=15_000)
    return page.query_selector_all("#pe-chat button.thumbnail-item")


def test_chat_answers_with_a_gallery_and_opens_a_result(browser, app_url) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport=PHONE)
    page.goto(app_url)
    page.wait_for_selector("#pe-question textarea", timeout=30_000)
    thumbs = _ask(page, "photos of a cat")
    assert len(thumbs) >= 1
    assert "skimage_chelsea" in page.inner_text("#pe-chat")
    _shot(page, "chat-phone.png")
    thumbs[0].click()
    page.wait_for_selector("#pe-detail .pe-detail img", timeout=20_000)
    page.wait_for_function("() => document.querySelector('#pe-detail img').naturalWidth > 0", timeout=15_000)
    detail = page.inner_text("#pe-detail")
    assert "skimage_chelsea.png" in detail and "Tags" in detail and "cat" in detail
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    _shot(page, "chat-phone-detail.png")
    page.close()

    wide = browser.new_page(viewport={"width": 1200, "height": 860})
    wide.goto(app_url)
    wide.wait_for_selector("#pe-question textarea", timeout=30_000)
    _ask(wide, "photos of a cat")[0].click()
    wide.wait_for_function("() => document.querySelector('#pe-detail img')?.naturalWidth > 0", timeout=20_000)
    path = _shot(wide, "chat-desktop.png")
    if not DOCS_SHOT.exists() or os.environ.get("PHOTO_ENGINE_UPDATE_SCREENSHOTS") == "1":
        DOCS_SHOT.parent.mkdir(exist_ok=True)
        shutil.copy(path, DOCS_SHOT)
    wide.close()


def test_search_tab_returns_a_grid_and_a_video_plays_from_its_moment(browser, app_url) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport=PHONE)
    page.goto(app_url)
    page.get_by_role("tab", name="Search").click()
    page.fill("#pe-search-text textarea", "a flower pot")
    page.click("#pe-search-go")
    page.wait_for_selector("#pe-search-grid button.thumbnail-item img", timeout=60_000)
    assert "result" in page.inner_text("#pe-search-note")
    _shot(page, "search-phone.png")
    page.query_selector_all("#pe-search-grid button.thumbnail-item")[0].click()
    page.wait_for_selector("#pe-search-detail video", timeout=20_000)
    src = page.get_attribute("#pe-search-detail video", "src")
    assert src.startswith("api/media/") and "/original#t=" in src
    page.wait_for_function("() => document.querySelector('#pe-search-detail video').readyState >= 1", timeout=20_000)
    _shot(page, "search-phone-video.png")
    page.close()


def test_login_is_required_and_a_wrong_password_is_rejected(browser, start_server) -> None:  # type: ignore[no-untyped-def]
    url = start_server(basic_auth=("alice", "wonderland"))
    page = browser.new_page(viewport=PHONE)
    page.goto(url)
    page.wait_for_selector("input[type=password]", timeout=30_000)
    assert page.query_selector("#pe-question") is None
    assert page.request.get(url + "api/status").status == 401
    page.fill("input[data-testid=textbox]", "alice")
    page.fill("input[type=password]", "guess")
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("text=Incorrect Credentials", timeout=15_000)
    assert page.query_selector("#pe-question") is None
    _shot(page, "login-rejected.png")
    page.fill("input[data-testid=textbox]", "alice")
    page.fill("input[type=password]", "wonderland")
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#pe-question textarea", timeout=30_000)
    assert page.request.get(url + "api/status").status == 200  # the login cookie opens the API to the page
    page.close()


@pytest.mark.slow
def test_library_and_people_pages(browser, app_url, library) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport=PHONE)
    page.goto(app_url)
    page.get_by_role("tab", name="Library").click()
    page.wait_for_function("document.querySelector('#pe-library-summary').innerText.includes('photos')", timeout=30_000)
    assert "3 photos" in page.inner_text("#pe-library-summary").replace("\n", " ")
    page.click("#pe-rescan")
    page.wait_for_function("document.querySelector('#pe-ingest-progress').innerText.includes('finished')",
                           timeout=60_000)
    _shot(page, "library-phone.png")
    page.get_by_role("tab", name="People").click()
    page.wait_for_selector("text=No people yet", timeout=30_000)
    page.close()
