"""End to end through the CLI: ingest real files, status/info shapes, bad input, rescan, move, delete."""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

from PIL import Image

from conftest import DATA, cli_json, run_cli


def _failed_paths(status: dict) -> dict[str, dict]:
    return {Path(f["path"]).name: f for f in status["failed"]}


def test_ingest_sample_library(source_dir: Path, library_dir: Path) -> None:
    report = cli_json("ingest", str(source_dir), library=library_dir)
    assert report["processed"] >= 20
    status = cli_json("status", library=library_dir)
    photos = len(list((source_dir / "photos").iterdir())) + len(list((source_dir / "exif").iterdir())) \
        + len(list((source_dir / "heic").iterdir()))
    assert status["media"] == {"photo": photos, "video": 3}
    assert status["pending"] == 0
    assert status["health"]["catalog"] == "ok" and status["health"]["vectors"] == "ok"
    assert status["health"]["schema_version"] >= 1
    failed = _failed_paths(status)
    assert set(failed) == {"go4_park_truncated.heic"}
    assert failed["go4_park_truncated.heic"]["stage"] == "extract"
    assert "heif" in failed["go4_park_truncated.heic"]["error"].lower()
    assert status["frames"] >= 3

    info = cli_json("info", str(source_dir / "exif" / "goexif_sample1.jpg"), library=library_dir)
    assert info["kind"] == "photo"
    assert info["taken_at"] == "2003-11-23T18:07:37"
    assert info["taken_at_source"].startswith("exif:")
    assert info["place"] == "Beijing, CN" or info["place"].startswith("Beijing")
    assert abs(info["lat"] - 39.91556) < 1e-3 and abs(info["lon"] - 116.39083) < 1e-3
    assert "NIKON" in info["camera"]
    assert info["status"] == "done" and info["error"] is None
    for key in ("media_id", "path", "width", "height", "duration", "frames"):
        assert key in info

    video = cli_json("info", str(source_dir / "videos" / "imageio_cockatoo.mp4"), library=library_dir)
    assert video["kind"] == "video" and abs(video["duration"] - 14.0) < 0.2
    times = [f["time"] for f in video["frames"]]
    assert times and times[0] == 0.0 and times == sorted(times)

    short = cli_json("info", str(source_dir / "videos" / "imageio_realshort.mp4"), library=library_dir)
    assert short["taken_at"].startswith("2014-11-05T13:51:33")
    assert short["taken_at_source"] == "quicktime:creation_time"

    truncated = cli_json("info", str(source_dir / "heic" / "go4_park_truncated.heic"), library=library_dir)
    assert truncated["status"] == "failed" and truncated["error"]
    assert truncated["place"] and "Seattle" in truncated["place"], "metadata that could be read is kept"

    no_exif = cli_json("info", str(source_dir / "photos" / "skimage_coffee.png"), library=library_dir)
    assert no_exif["taken_at_source"] == "file:mtime"

    table = run_cli("status", library=library_dir).stdout
    assert "health" in table and "go4_park_truncated.heic" in table


def test_derived_images_are_upright_and_sources_untouched(source_dir: Path, library_dir: Path) -> None:
    before = {p: p.read_bytes() for p in source_dir.rglob("*") if p.is_file()}
    cli_json("ingest", str(source_dir / "exif"), library=library_dir)
    thumbs = sorted((library_dir / "derived" / "thumbs").rglob("*_large.jpg"))
    assert thumbs
    for n in range(1, 9):
        info = cli_json("info", str(source_dir / "exif" / f"goexif_f{n}-exif.jpg"), library=library_dir)
        assert (info["width"], info["height"]) == (40, 80), n
    assert before == {p: p.read_bytes() for p in source_dir.rglob("*") if p.is_file()}


def test_bad_inputs_never_stop_the_run(tmp_path: Path, library_dir: Path) -> None:
    src = tmp_path / "bad"
    src.mkdir()
    shutil.copy(DATA / "photos" / "skimage_rocket.jpg", src / "good.jpg")
    (src / "empty.jpg").write_bytes(b"")
    (src / "notes.jpg").write_text("this is not a photo\n")
    good = (DATA / "photos" / "skimage_rocket.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(good[:2000])
    (src / "random.mp4").write_bytes(os.urandom(5000))
    shutil.copy(DATA / "photos" / "skimage_chelsea.png", src / "mislabeled.jpg")  # a PNG named .jpg
    shutil.copy(DATA / "videos" / "imageio_realshort.mp4", src / "clip.jpg")  # a video named .jpg
    (src / "readme.txt").write_text("ignored: not media")
    bomb = src / "bomb.png"
    Image.new("1", (1, 1)).save(bomb)
    data = bytearray(bomb.read_bytes())
    data[16:24] = (40000).to_bytes(4, "big") + (40000).to_bytes(4, "big")  # IHDR claims 40000x40000
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    bomb.write_bytes(bytes(data))
    os.mkfifo(src / "pipe.jpg")
    weird = os.fsencode(str(src)) + b"/caf\xe9-latin1.jpg"
    shutil.copy(DATA / "exif" / "pillow_flower.jpg", weird)
    (src / "loop").symlink_to(src)  # a symlink loop must not hang the walk
    hidden = src / ".hidden"
    hidden.mkdir()
    shutil.copy(DATA / "photos" / "skimage_coffee.png", hidden / "secret.png")

    report = cli_json("ingest", str(src), library=library_dir)
    status = cli_json("status", library=library_dir)
    failed = _failed_paths(status)
    assert set(failed) == {"empty.jpg", "notes.jpg", "truncated.jpg", "random.mp4", "bomb.png", "pipe.jpg"}
    assert "empty" in failed["empty.jpg"]["error"]
    assert "regular" in failed["pipe.jpg"]["error"]
    assert "bomb" in failed["bomb.png"]["error"].lower() or "too large" in failed["bomb.png"]["error"].lower()
    assert status["media"]["video"] == 1  # clip.jpg, detected by content
    mislabeled = cli_json("info", str(src / "mislabeled.jpg"), library=library_dir)
    assert mislabeled["format"] == "png" and mislabeled["status"] == "done"
    latin = [p for p in cli_json("status", library=library_dir)["failed"] if "caf" in p["path"]]
    assert not latin
    assert report["scans"][0]["ignored"] >= 1  # readme.txt
    # photos: good, mislabeled, latin-1 name, truncated, bomb (the last two failed); unrecognized files are not
    assert status["media"]["photo"] == 5 and status["unrecognized"] == 4


def test_rescan_move_rename_delete_and_change(source_dir: Path, library_dir: Path) -> None:
    cli_json("ingest", str(source_dir / "photos"), library=library_dir)
    before = cli_json("info", str(source_dir / "photos" / "skimage_chelsea.png"), library=library_dir)
    again = cli_json("ingest", library=library_dir)
    assert again["scans"][0]["unchanged"] == 3 and again["processed"] == 0

    (source_dir / "photos" / "sub").mkdir()
    os.rename(source_dir / "photos" / "skimage_chelsea.png", source_dir / "photos" / "sub" / "cat.png")
    (source_dir / "photos" / "skimage_rocket.jpg").unlink()
    img = Image.open(source_dir / "photos" / "skimage_coffee.png")
    img.rotate(90, expand=True).save(source_dir / "photos" / "skimage_coffee.png")
    report = cli_json("ingest", library=library_dir)
    scan = report["scans"][0]
    assert (scan["moved"], scan["deleted"], scan["changed"]) == (1, 1, 1)
    assert report["processed"] == 1  # only the changed file is re-processed; the moved one keeps its analysis
    moved = cli_json("info", str(source_dir / "photos" / "sub" / "cat.png"), library=library_dir)
    assert moved["media_id"] == before["media_id"] and moved["status"] == "done"
    gone = cli_json("info", str(before["media_id"]), library=library_dir)
    assert gone["path"].endswith("cat.png")
    status = cli_json("status", library=library_dir)
    assert status["media"]["photo"] == 2 and status["deleted"] == 1


def test_library_inside_source_is_skipped(source_dir: Path) -> None:
    library = source_dir / "photos" / "my-library"
    cli_json("ingest", str(source_dir / "photos"), library=library)
    cli_json("ingest", library=library)
    status = cli_json("status", library=library)
    assert status["media"]["photo"] == 3, "thumbnails inside the library must not be catalogued"


def test_second_ingest_on_same_library_is_refused_clearly(source_dir: Path, library_dir: Path) -> None:
    import fcntl

    library_dir.mkdir(parents=True)
    with open(library_dir / "ingest.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        proc = run_cli("ingest", str(source_dir / "photos"), library=library_dir, check=False)
    assert proc.returncode != 0 and "another ingest is running" in proc.stderr


def test_missing_folder_is_a_clear_error(tmp_path: Path, library_dir: Path) -> None:
    proc = run_cli("ingest", str(tmp_path / "nope"), library=library_dir, check=False)
    assert proc.returncode != 0 and "not a folder" in proc.stderr
    proc = run_cli("info", str(tmp_path / "nope.jpg"), library=library_dir, check=False)
    assert proc.returncode == 2 and "not in the library" in proc.stderr


def test_newer_schema_is_refused(library_dir: Path) -> None:
    import sqlite3

    cli_json("status", library=library_dir)
    with sqlite3.connect(library_dir / "catalog.db") as db:
        db.execute("UPDATE schemainfo SET value='999' WHERE key='schema_version'")
    proc = run_cli("status", library=library_dir, check=False)
    assert proc.returncode != 0 and "newer" in proc.stderr
