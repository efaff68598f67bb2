"""One decode per file for all analyzers: a shared MobileNetV2 pass, dlib faces in worker processes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlmodel import select

from conftest import DATA, cli_json


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library whose files are extracted (thumbnails, keyframes) and whose analyzers have not run."""
    root = tmp_path_factory.mktemp("batching")
    src = root / "src"
    src.mkdir()
    for name in ("skimage_chelsea.png", "skimage_coffee.png", "skimage_rocket.jpg"):
        shutil.copy(DATA / "photos" / name, src / name)
    shutil.copy(DATA / "faces" / "mpl_grace_hopper.jpg", src / "hopper.jpg")
    shutil.copy(DATA / "videos" / "imageio_realshort.mp4", src / "clip.mp4")
    with pytest.MonkeyPatch.context() as env:  # module scope: conftest's per-test setting is not active yet
        env.setenv("PHOTO_ENGINE_ANALYZERS", "none")
        cli_json("ingest", str(src), library=root / "lib")
    return root / "lib"


def _fresh_copy(library: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "lib"
    shutil.copytree(library, copy)
    return copy


def test_one_backbone_pass_gives_the_same_vectors_and_tags_as_two(extracted: Path) -> None:
    from catalog.db import session_for
    from catalog.models import Media
    from catalog.settings import Library
    from ingest.analyze import images_of, load_analyzer

    library = Library.at(extracted)
    embed, tags = load_analyzer("embed"), load_analyzer("tags")
    assert embed.shares_backbone(tags)
    with session_for(library.database_url) as session:
        refs = [r for m in session.exec(select(Media)).all() for r in images_of(session, library, m)]
    images = [Image.open(r.path).convert("RGB") for r in refs]
    vectors, labels = embed.run_with_tags(images, tags)
    assert np.allclose(np.stack(vectors), np.stack(embed.run(images)), atol=1e-5)
    separate = tags.run(images)
    assert [[name for name, _ in row] for row in labels] == [[name for name, _ in row] for row in separate]
    assert [p for row in labels for _, p in row] == pytest.approx([p for row in separate for _, p in row], abs=1e-3)


def test_all_stages_in_one_pass_match_stage_by_stage(extracted: Path, tmp_path: Path) -> None:
    """run_analyzers(embed, tags, faces) writes what running each stage alone writes."""
    from catalog.db import session_for
    from catalog.models import Face, Tag, Task
    from catalog.settings import Library
    from ingest.analyze import backfill, run_analyzer, run_analyzers

    results = {}
    for mode in ("together", "apart"):
        library = Library.at(_fresh_copy(extracted, tmp_path / mode))
        with session_for(library.database_url) as session:
            backfill(session, ["embed", "tags", "faces"])
            if mode == "together":
                summaries = run_analyzers(session, library, ["embed", "tags", "faces"], batch_size=3, workers=2)
            else:
                summaries = {s: run_analyzer(session, library, s, batch_size=3) for s in ("embed", "tags", "faces")}
            assert {s: (r.done, r.failed) for s, r in summaries.items()} == {s: (5, 0) for s in summaries}
            tags = sorted((t.media_id, t.frame_id, t.label) for t in session.exec(select(Tag)).all())
            faces = sorted((f.media_id, round(f.x, 3), round(f.y, 3)) for f in session.exec(select(Face)).all())
            statuses = {(t.stage, t.status) for t in session.exec(select(Task)).all()}
        results[mode] = (tags, faces)
        assert statuses == {(s, "done") for s in ("extract", "embed", "tags", "faces")}
    assert results["together"] == results["apart"]
    assert results["together"][1], "Grace Hopper's face was found"


class CrashingFaces:
    """A single-threaded analyzer whose native code dies: the worker process exits mid-batch."""

    family = "faces"
    model_id = "crashing-faces"
    single_threaded = True

    def run(self, images: list[Image.Image]) -> list[list]:
        os._exit(3)


def test_a_crashing_worker_fails_that_stage_only_and_the_run_goes_on(extracted: Path, tmp_path: Path) -> None:
    from catalog.db import session_for
    from catalog.models import Task
    from catalog.settings import Library
    from ingest.analyze import backfill, load_analyzer, run_analyzers

    library = Library.at(_fresh_copy(extracted, tmp_path))
    with session_for(library.database_url) as session:
        backfill(session, ["tags", "faces"])
        summaries = run_analyzers(session, library, ["tags", "faces"], batch_size=2, workers=2,
                                  models={"tags": load_analyzer("tags"), "faces": CrashingFaces()})
        assert (summaries["tags"].done, summaries["faces"].failed) == (5, 5)
        failed = session.exec(select(Task).where(Task.stage == "faces")).all()
    assert {t.status for t in failed} == {"failed"}
    assert all("crashed" in (t.error or "") for t in failed)


class FacesCrashingOnOneImage:
    """dlib stand-in whose native code dies on one image only (found by its mean pixel value)."""

    family = "faces"
    model_id = "faces-crashing-on-one"
    single_threaded = True

    def __init__(self, poison_mean: float) -> None:
        self.poison_mean = poison_mean

    def run(self, images: list[Image.Image]) -> list[list]:
        if any(abs(float(np.asarray(image).mean()) - self.poison_mean) < 1e-6 for image in images):
            os._exit(3)
        return [[] for _ in images]


def test_a_crash_is_blamed_on_its_own_file_though_the_next_batch_was_in_flight(extracted: Path,
                                                                                 tmp_path: Path) -> None:
    """Workers already hold the next batch's files while a batch finishes: a crash is retried alone before
    anyone is blamed, so the innocent files (before and after) are done and only the poisonous one fails."""
    from catalog.db import session_for
    from catalog.models import Media, Task
    from catalog.settings import Library
    from ingest.analyze import backfill, images_of, load_analyzer, run_analyzers

    library = Library.at(_fresh_copy(extracted, tmp_path))
    with session_for(library.database_url) as session:
        photos = session.exec(select(Media).where(Media.kind == "photo").order_by(Media.id)).all()
        poison = photos[2]  # batches of one file: the crash comes while the next file is already submitted
        with Image.open(images_of(session, library, poison)[0].path) as image:
            poison_mean = float(np.asarray(image.convert("RGB")).mean())
        backfill(session, ["tags", "faces"])
        summaries = run_analyzers(session, library, ["tags", "faces"], batch_size=1, workers=2,
                                  models={"tags": load_analyzer("tags"), "faces": FacesCrashingOnOneImage(poison_mean)})
        faces = {t.media_id: t for t in session.exec(select(Task).where(Task.stage == "faces")).all()}
    assert (summaries["tags"].done, summaries["faces"].done, summaries["faces"].failed) == (5, 4, 1)
    assert faces[poison.id].status == "failed" and "crashed" in (faces[poison.id].error or "")
    assert all(t.status == "done" for media_id, t in faces.items() if media_id != poison.id)


def test_analyzers_pick_the_gpu_when_torch_sees_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: the choice itself is checked (CUDA when available, larger batches, a spec can pin cpu)."""
    import torch

    from ingest.analyzers import embed, tags
    from ingest.analyzers.base import default_batch_size, inference_device

    assert inference_device({}) == "cpu" and tags.load({}).batch_size == 8
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert inference_device({}) == "cuda" and inference_device({"device": "cpu"}) == "cpu"
    assert default_batch_size({}, cpu=8, gpu=128) == 128 and default_batch_size({"batch_size": 4}, 8, 128) == 4
    tagger = tags.load({})
    assert (tagger.device, tagger.batch_size) == ("cuda", 128)
    assert embed.load({}).shares_backbone(tagger)
    assert not embed.load({}).shares_backbone(tags.load({"device": "cpu"}))
