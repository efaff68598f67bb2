"""langchain-core tools over the plain tool functions, bound to one library, for the chat agent.

Every tool answers with the same envelope, `{"ok", "result", "warnings"}` (or `{"ok": false, "error"}`), which
small models follow more reliably than bare values or exceptions. Arguments are pydantic models with tight
bounds, because a grammar-constrained LLM respects string lengths but not integer ranges (DESIGN.md).
Tools that change the catalog (naming and merging people) are only included when asked for.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import BaseModel, Field, ValidationError
from sqlmodel import select

from catalog.db import session_for
from catalog.models import Caption, Face, Frame, Media, Person, Tag
from catalog.settings import Library
from tools.search import MAX_NAME, MAX_TEXT

SCENE_CHANGE = 0.3  # a keyframe this different from the previous one starts a new scene
LLM_MAX_RESULTS = 50


# --- a plain function the agent, API and UI share -----------------------------------------------------------

def summarize_video(library: Library, media_id: int) -> dict[str, Any]:
    """What happens over time in a video, from its keyframes: scenes with times, tags, people and captions."""
    with session_for(library.database_url) as session:
        media = session.get(Media, int(media_id))
        if media is None or media.state != "active":
            raise LookupError(f"no media with id {media_id}")
        if media.kind != "video":
            raise ValueError(f"media {media_id} is a {media.kind}, not a video")
        frames = session.exec(select(Frame).where(Frame.media_id == media.id).order_by(Frame.idx)).all()
        tags = session.exec(select(Tag).where(Tag.media_id == media.id)).all()
        captions = session.exec(select(Caption).where(Caption.media_id == media.id)).all()
        faces = session.exec(select(Face.frame_id, Face.person_id, Person.name)
                             .outerjoin(Person, Person.id == Face.person_id)  # type: ignore[arg-type]
                             .where(Face.media_id == media.id)).all()
    keyframes = []
    for frame in frames:
        frame_tags = sorted((t for t in tags if t.frame_id == frame.id), key=lambda t: -t.score)
        people = sorted({name or (f"Person {pid}" if pid else "unknown person")
                         for fid, pid, name in faces if fid == frame.id})
        keyframes.append({"time": round(frame.time, 2), "scene_change": round(frame.scene_change, 3),
                          "tags": [{"label": t.label, "score": round(t.score, 3)} for t in frame_tags[:3]],
                          "people": people,
                          "captions": [c.text for c in captions if c.frame_id == frame.id]})
    scenes = scenes_from(keyframes, media.duration)
    return {"media_id": media.id, "path": media.path, "duration": media.duration,
            "taken_at": media.taken_at.isoformat() if media.taken_at else None,
            "keyframes": keyframes, "scenes": scenes, "summary": describe_scenes(scenes)}


def scenes_from(keyframes: list[dict[str, Any]], duration: float | None) -> list[dict[str, Any]]:
    """Consecutive keyframes grouped into scenes; a scene starts where the picture changes a lot."""
    scenes: list[dict[str, Any]] = []
    for frame in keyframes:
        if not scenes or frame["scene_change"] >= SCENE_CHANGE:
            scenes.append({"start": frame["time"], "end": None, "tags": {}, "people": [], "captions": []})
        scene = scenes[-1]
        for tag in frame["tags"]:
            scene["tags"][tag["label"]] = max(scene["tags"].get(tag["label"], 0.0), tag["score"])
        scene["people"] += [p for p in frame["people"] if p not in scene["people"]]
        scene["captions"] += [c for c in frame["captions"] if c not in scene["captions"]]
    for current, following in zip(scenes, scenes[1:] + [None]):
        current["end"] = following["start"] if following else (round(duration, 2) if duration else current["start"])
        current["tags"] = [label for label, _ in sorted(current["tags"].items(), key=lambda kv: -kv[1])[:4]]
    return scenes


def describe_scenes(scenes: list[dict[str, Any]]) -> str:
    """One line per scene: '0.0-4.0 s: pot, vase; with Ann'."""
    lines = []
    for scene in scenes:
        what = scene["captions"][0] if scene["captions"] else ", ".join(scene["tags"]) or "nothing recognised"
        who = f"; with {', '.join(scene['people'])}" if scene["people"] else ""
        lines.append(f"{scene['start']:.1f}-{scene['end']:.1f} s: {what}{who}")
    return "\n".join(lines) if lines else "no keyframes"


# --- argument schemas ----------------------------------------------------------------------------------------

class FilterArgs(BaseModel):
    kind: Literal["photo", "video"] | None = Field(None, description="Only photos or only videos.")
    date_from: str | None = Field(None, max_length=32, description="Taken on or after, ISO date (2019-05-01).")
    date_to: str | None = Field(None, max_length=32, description="Taken on or before, ISO date (inclusive).")
    year: int | None = Field(None, ge=1800, le=2100, description="Taken in this year.")
    month: int | None = Field(None, ge=1, le=12, description="Taken in this month (1-12).")
    place: str | None = Field(None, max_length=MAX_NAME, description="City, region or country name.")
    person: str | None = Field(None, max_length=MAX_NAME, description="A person's name or id.")
    camera: str | None = Field(None, max_length=MAX_NAME, description="Camera make or model, e.g. 'iPhone'.")


class SearchArgs(FilterArgs):
    text: str | None = Field(None, max_length=MAX_TEXT,
                             description="What the photo or video shows, e.g. 'a dog on the beach'. Omit to "
                                         "list by filters only (newest first).")
    limit: int = Field(10, ge=1, le=LLM_MAX_RESULTS, description="How many results.")
    sort: Literal["relevance", "newest", "oldest"] = Field("relevance", description="Order of results.")


class SimilarArgs(FilterArgs):
    media_id: int = Field(..., ge=1, description="The file to find look-alikes of.")
    limit: int = Field(10, ge=1, le=LLM_MAX_RESULTS)


class MediaIdArgs(BaseModel):
    media_id: int = Field(..., ge=1, description="A media id from an earlier result.")


class TimelineArgs(FilterArgs):
    by: Literal["year", "month"] = Field("month", description="Count per year or per month.")


class PlacesArgs(FilterArgs):
    limit: int = Field(20, ge=1, le=200)


class PeopleArgs(BaseModel):
    limit: int = Field(20, ge=1, le=200)


class PersonArgs(FilterArgs):
    person: str = Field(..., min_length=1, max_length=MAX_NAME, description="A person's name or id.")
    limit: int = Field(10, ge=1, le=LLM_MAX_RESULTS)


class CoPeopleArgs(BaseModel):
    person: str = Field(..., min_length=1, max_length=MAX_NAME, description="A person's name or id.")
    limit: int = Field(10, ge=1, le=100)


class DuplicatesArgs(BaseModel):
    max_hamming: int = Field(8, ge=0, le=32, description="Perceptual hash bits that may differ.")
    min_cosine: float = Field(0.95, ge=0.5, le=1.0, description="Embedding similarity for a look-alike.")


class AlbumArgs(BaseModel):
    name: str = Field(..., min_length=1, max_length=MAX_NAME)
    limit: int = Field(20, ge=1, le=LLM_MAX_RESULTS)


class NoArgs(BaseModel):
    pass


class NameArgs(BaseModel):
    person_id: int = Field(..., ge=1)
    name: str = Field(..., min_length=1, max_length=MAX_NAME)


class MergeArgs(BaseModel):
    keep: int = Field(..., ge=1, description="Person id that stays.")
    other: int = Field(..., ge=1, description="Person id merged into `keep`.")


# --- the envelope ---------------------------------------------------------------------------------------------

def envelope(call: Callable[[], Any]) -> dict[str, Any]:
    """Run a tool body: {"ok": true, "result", "warnings"} or {"ok": false, "error", "warnings": []}."""
    try:
        value = call()
    except ValidationError as error:
        return _invalid(error)
    except (LookupError, ValueError, PermissionError) as error:
        message = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
        return {"ok": False, "error": message, "warnings": []}
    if isinstance(value, tuple):
        result, warnings = value
    else:
        result, warnings = value, []
    if isinstance(result, list) and not result and not warnings:
        warnings = ["nothing matched"]
    return {"ok": True, "result": result, "warnings": warnings}


def _invalid(error: ValidationError) -> dict[str, Any]:
    """The envelope for arguments that fail their schema (also langchain's handle_validation_error)."""
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in error.errors()[:5])
    return {"ok": False, "error": f"invalid arguments: {problems}", "warnings": []}


# --- the tools ------------------------------------------------------------------------------------------------

def build_tools(library: Library, allow_changes: bool = False) -> list[Any]:
    """StructuredTools bound to `library`; with `allow_changes`, also name_person and merge_people."""
    from langchain_core.tools import StructuredTool

    from tools import albums, duplicates, people_tools, search, stats
    from tools.library import media_info

    def filters(args: dict[str, Any]) -> dict[str, Any]:
        return {k: args.get(k) for k in FilterArgs.model_fields}

    def run_search(**args: Any) -> dict[str, Any]:
        def body() -> Any:
            outcome = search.search(library, **args)
            return outcome.results, outcome.warnings
        return envelope(body)

    def run_similar(media_id: int, limit: int = 10, **args: Any) -> dict[str, Any]:
        def body() -> Any:
            outcome = search.search(library, image=media_id, limit=limit, **filters(args))
            return outcome.results, outcome.warnings
        return envelope(body)

    def run_info(media_id: int) -> dict[str, Any]:
        def body() -> Any:
            info = media_info(library, int(media_id))
            if info is None:
                raise LookupError(f"no media with id {media_id}")
            return info
        return envelope(body)

    def run_person_media(person: str, limit: int = 10, **args: Any) -> dict[str, Any]:
        return envelope(lambda: people_tools.media_with(library, person, limit=limit,
                                                        **{k: v for k, v in filters(args).items() if k != "person"}))

    specs: list[tuple[str, str, type[BaseModel], Callable[..., Any]]] = [
        ("search_media", "Find photos and videos by what they show (text) and/or filters: type, dates, year, "
         "month, place, person, camera. Without text: files matching the filters, newest first. Each result "
         "has media_id, path, kind, score, taken_at, place, frame_time (videos) and why it matched.",
         SearchArgs, run_search),
        ("find_similar", "Files that look like the file with this media_id (itself excluded).", SimilarArgs,
         run_similar),
        ("media_info", "Everything known about one file: dates, place, camera, size, tags, faces, keyframes.",
         MediaIdArgs, run_info),
        ("count_media", "How many photos and videos match the filters.", FilterArgs,
         lambda **a: envelope(lambda: stats.count_media(library, **a))),
        ("timeline", "Number of files per year or per month (with filters).", TimelineArgs,
         lambda by="month", **a: envelope(lambda: stats.timeline(library, by=by, **a))),
        ("places", "Where files were taken, most files first (with filters).", PlacesArgs,
         lambda limit=20, **a: envelope(lambda: stats.places(library, limit=limit, **a))),
        ("list_people", "People recognised in the library (by face), most frequent first, with their ids.",
         PeopleArgs, lambda limit=20: envelope(lambda: _brief_people(people_tools.list_people(library, limit)))),
        ("media_with", "Files in which a person appears (by name or id), newest first.", PersonArgs,
         run_person_media),
        ("people_with", "Who appears most often together with a person (shared files).", CoPeopleArgs,
         lambda person, limit=10: envelope(lambda: people_tools.people_with(library, person, limit))),
        ("find_duplicates", "Groups of duplicate and near-duplicate files.", DuplicatesArgs,
         lambda max_hamming=8, min_cosine=0.95: envelope(
             lambda: duplicates.find_duplicates(library, max_hamming, min_cosine))),
        ("summarize_video", "What happens over time in a video: scenes with start/end times, what is seen and "
         "who appears.", MediaIdArgs, lambda media_id: envelope(lambda: summarize_video(library, media_id))),
        ("list_albums", "Saved searches (smart albums).", NoArgs,
         lambda: envelope(lambda: albums.list_albums(library))),
        ("album_media", "The files in a smart album (its saved search, run now).", AlbumArgs,
         lambda name, limit=20: envelope(lambda: albums.album_media(library, name, limit))),
    ]
    if allow_changes:
        specs += [
            ("name_person", "Give the person with this id a name.", NameArgs,
             lambda person_id, name: envelope(lambda: people_tools.name_person(library, person_id, name))),
            ("merge_people", "Merge person `other` into person `keep` (same person found twice).", MergeArgs,
             lambda keep, other: envelope(lambda: people_tools.merge_people(library, keep, other))),
        ]
    return [StructuredTool.from_function(func=func, name=name, description=description, args_schema=schema,
                                         handle_validation_error=_invalid)
            for name, description, schema, func in specs]


def _brief_people(people: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """People without their full file lists (those can be thousands of paths)."""
    return [{"person_id": p["person_id"], "name": p["name"], "faces": p["faces"], "files": len(p["media"])}
            for p in people]
