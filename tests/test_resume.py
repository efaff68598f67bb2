"""Kill -9 in the middle of an ingest, rerun: the catalog ends exactly as after one uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from conftest import DATA, REPO, cli_json


def _make_library(folder: Path, count: int) -> None:
    """Distinct 2 MP JPEGs (crops of real photos) so each file takes real decode work."""
    folder.mkdir(parents=True)
    base = Image.open(DATA / "photos" / "skimage_rocket.jpg").convert("RGB").resize((1800, 1200))
    for i in range(count):
        crop = base.crop((i * 7, i * 3, 1800 - i * 5, 1200 - i * 2))
        crop.save(folder / f"img_{i:03d}.jpg", quality=90)
    (folder / "clips").mkdir()
    for name in ("imageio_cockatoo.mp4", "imageio_realshort.mp4"):
        (folder / "clips" / name).write_bytes((DATA / "videos" / name).read_bytes())


def _catalog_snapshot(library: Path) -> dict:
    with sqlite3.connect(library / "catalog.db") as db:
        return {
            "media": sorted(db.execute("SELECT path, kind, content_hash, taken_at, width, height FROM media")),
            "frames": sorted(db.execute("SELECT m.path, f.idx, f.time FROM frame f JOIN media m ON m.id=f.media_id")),
            "tasks": sorted(db.execute("SELECT m.path, t.stage, t.status FROM task t JOIN media m ON m.id=t.media_id")),
        }


def _done_count(library: Path) -> int:
    try:
        with sqlite3.connect(library / "catalog.db", timeout=1) as db:
            return db.execute("SELECT count(*) FROM task WHERE status='done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_and_resume_gives_the_same_catalog(tmp_path: Path) -> None:
    source = tmp_path / "src"
    _make_library(source, 40)
    reference, resumed = tmp_path / "ref-lib", tmp_path / "resumed-lib"
    cli_json("ingest", str(source), library=reference)

    env = dict(os.environ, PHOTO_ENGINE_LIBRARY=str(resumed))
    proc = subprocess.Popen([sys.executable, "-m", "assistant.cli", "ingest", str(source), "--batch-size", "4"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while _done_count(resumed) < 6 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed; make the library bigger"
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: parent and decode workers
    proc.wait()
    killed = _catalog_snapshot(resumed)
    assert 0 < sum(1 for t in killed["tasks"] if t[2] == "done") < 42

    report = cli_json("ingest", library=resumed)
    assert report["reclaimed"] >= 0
    assert _catalog_snapshot(resumed) == _catalog_snapshot(reference)
    status = cli_json("status", library=resumed)
    assert status["pending"] == 0 and status["failed"] == []
    assert status["media"] == {"photo": 40, "video": 2}
