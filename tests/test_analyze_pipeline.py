"""Analyzer stages through the real ingest queue: tags, image vectors in Milvus, faces → people, names stick."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from conftest import DATA, cli_json, run_cli


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A library of cats, coffee, a video and faces: the same portrait three ways, and a second person."""
    root = tmp_path_factory.mktemp("analyzed")
    src = root / "src"
    src.mkdir()
    for name in ("skimage_chelsea.png", "skimage_coffee.png"):
        shutil.copy(DATA / "photos" / name, src / name)
    shutil.copy(DATA / "videos" / "imageio_realshort.mp4", src / "clip.mp4")
    hopper = Image.open(DATA / "faces" / "mpl_grace_hopper.jpg").convert("RGB")
    hopper.save(src / "hopper_a.jpg")
    ImageOps.mirror(hopper).save(src / "hopper_b.jpg")
    ImageEnhance.Brightness(hopper.crop((40, 20, 480, 560))).enhance(1.3).save(src / "hopper_c.jpg")
    shutil.copy(DATA / "faces" / "skimage_astronaut.png", src / "astronaut.png")
    library = root / "lib"
    import os

    env_before = os.environ.get("PHOTO_ENGINE_ANALYZERS")
    os.environ["PHOTO_ENGINE_ANALYZERS"] = "embed,tags,faces"
    try:
        cli_json("ingest", str(src), library=library)
    finally:
        if env_before is None:
            os.environ.pop("PHOTO_ENGINE_ANALYZERS", None)
        else:
            os.environ["PHOTO_ENGINE_ANALYZERS"] = env_before
    return src, library


def test_tags_and_vectors_for_every_photo_and_keyframe(analyzed: tuple[Path, Path]) -> None:
    src, library = analyzed
    cat = cli_json("info", str(src / "skimage_chelsea.png"), library=library)
    assert any("cat" in t["label"] for t in cat["tags"][:3])
    coffee = cli_json("info", str(src / "skimage_coffee.png"), library=library)
    assert any(word in " ".join(t["label"] for t in coffee["tags"][:3]) for word in ("espresso", "cup", "coffee"))
    video = cli_json("info", str(src / "clip.mp4"), library=library)
    frame_ids = {f["frame_id"] for f in video["frames"]}
    assert frame_ids and {t["frame_id"] for t in video["tags"]} <= frame_ids and video["tags"]
    with sqlite3.connect(library / "catalog.db") as db:
        stages = dict(db.execute("SELECT stage, count(*) FROM task WHERE status='done' GROUP BY stage"))
    assert stages["embed"] == stages["tags"] == stages["faces"] == stages["extract"] == 7

    from catalog.vectors import VectorStore

    with VectorStore(str(library / "vectors.db")) as store:
        [collection] = store.client.list_collections()
        store.client.load_collection(collection)
        rows = store.client.query(collection, filter="media_id >= 0", output_fields=["media_id", "frame_id", "kind"])
    assert len(rows) == 6 + len(frame_ids)  # one vector per photo and per keyframe
    assert {r["frame_id"] for r in rows if r["kind"] == "video"} == frame_ids

    # ingest left search's numpy snapshot matching the collection: the first search reads nothing back
    from catalog.settings import Library
    from catalog.vector_snapshot import collection_signature

    signature = collection_signature(Library.at(library), collection)
    snapshot = library / "cache" / "vectors" / f"{collection}-{signature}"
    assert np.load(snapshot / "vector.npy").shape[0] == len(rows)


def test_same_face_one_person_different_faces_apart_and_names_stick(analyzed: tuple[Path, Path]) -> None:
    src, library = analyzed
    people = cli_json("people", library=library)["people"]
    hopper = [p for p in people if any("hopper" in m for m in p["media"])]
    assert len(hopper) == 1 and len(hopper[0]["media"]) == 3
    assert not any("astronaut" in m for m in hopper[0]["media"])
    person_id = hopper[0]["person_id"]
    run_cli("people", "name", str(person_id), "Grace", library=library)

    shutil.copy(src / "hopper_a.jpg", src / "hopper_d.jpg")
    ImageOps.grayscale(Image.open(src / "hopper_b.jpg")).convert("RGB").save(src / "hopper_d.jpg")
    import os

    os.environ["PHOTO_ENGINE_ANALYZERS"] = "embed,tags,faces"
    try:
        cli_json("ingest", library=library)
    finally:
        os.environ["PHOTO_ENGINE_ANALYZERS"] = "none"
    people = cli_json("people", library=library)["people"]
    grace = [p for p in people if p["name"] == "Grace"]
    assert len(grace) == 1 and grace[0]["person_id"] == person_id and len(grace[0]["media"]) == 4

    proc = run_cli("people", "name", "99999", "Nobody", library=library, check=False)
    assert proc.returncode == 2 and "no person" in proc.stderr


def test_merge_people(analyzed: tuple[Path, Path]) -> None:
    _, library = analyzed
    with sqlite3.connect(library / "catalog.db") as db:
        face_ids = [row[0] for row in db.execute("SELECT id FROM face ORDER BY id")]
        db.execute("INSERT INTO person (name, created_at) VALUES ('Extra', '2026-01-01 00:00:00')")
        extra = db.execute("SELECT max(id) FROM person").fetchone()[0]
        db.execute("UPDATE face SET person_id=? WHERE id=?", (extra, face_ids[-1]))
    people = {p["person_id"]: p for p in cli_json("people", library=library)["people"]}
    keep = next(pid for pid, p in people.items() if p["name"] == "Grace")
    before = people[keep]["faces"]
    run_cli("people", "merge", str(keep), str(extra), library=library)
    after = {p["person_id"]: p for p in cli_json("people", library=library)["people"]}
    assert extra not in after and after[keep]["faces"] == before + 1


def test_models_list_shows_offline_profile() -> None:
    data = json.loads(run_cli("models", "list", "--json", library=Path("/tmp/unused-lib")).stdout)
    families = {row["family"]: row for row in data["models"]}
    assert data["profile"] == "offline"
    assert families["tags"]["present"] and families["faces"]["present"] and families["tags"]["license"]


def test_face_vectors_are_unit_length(analyzed: tuple[Path, Path]) -> None:
    _, library = analyzed
    with sqlite3.connect(library / "catalog.db") as db:
        blobs = [row[0] for row in db.execute("SELECT embedding FROM face")]
    assert blobs
    for blob in blobs:
        assert abs(float(np.linalg.norm(np.frombuffer(blob, np.float32))) - 1.0) < 1e-3
