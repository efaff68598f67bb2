"""`watch`: a file dropped into a watched source is catalogued without another command."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from catalog.settings import Library
from conftest import DATA
from ingest.watch import watch_sources
from tools.library import library_status, media_info


def test_new_file_is_ingested_while_watching(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(DATA / "photos" / "skimage_rocket.jpg", source / "first.jpg")
    library = Library.at(tmp_path / "lib")
    stop = threading.Event()
    runs: list[int] = []
    watcher = threading.Thread(target=watch_sources, args=(library, [source]),
                               kwargs={"workers": 1, "settle": 0.3, "stop": stop, "poll": 0.1,
                                       "report": lambda r: runs.append(r.run.done)})
    watcher.start()
    try:
        deadline = time.monotonic() + 60
        while not runs and time.monotonic() < deadline:
            time.sleep(0.1)
        assert library_status(library, check_vectors=False)["media"]["photo"] == 1
        shutil.copy(DATA / "exif" / "goexif_sample1.jpg", source / "second.jpg")
        while len(runs) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        watcher.join(timeout=30)
    info = media_info(library, str(source / "second.jpg"))
    assert info is not None and info["status"] == "done" and info["place"].startswith("Beijing")
