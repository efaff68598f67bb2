"""Search the library: text → photos and videos, image → similar files, or filters alone (newest first).

Filters come first (Immich's lesson): they are validated once by `SearchFilters`, then become SQLAlchemy
conditions with bound parameters and, for the scalar fields Milvus carries (kind, year, month, taken time),
an expression built only from validated ints and enum values, so untrusted text never reaches SQL or Milvus
as raw strings. Ranking blends whatever the active profile has, each signal scored 0..1 with its own relevance
cutoff and combined by noisy-OR (several weak matches add up, one strong match is enough):
- tags: the query's MiniLM embedding against the 1000 tag label embeddings; a photo (or a video keyframe)
  scores label relevance × tag weight, a video takes its best keyframe and reports that keyframe's time;
- image–text vectors (CLIP profiles only): a vector search with the filters inside the search;
- place / camera names mentioned in the query, and caption words (when captions exist).
Image → similar uses the same vector search (best keyframe per video, the query file excluded), or
perceptual-hash distance when there are no vectors. For a local library the vector search runs exactly in
numpy over a memory-mapped snapshot of the Milvus Lite collection (Milvus stays the store): Milvus Lite
took ~0.5 s per search at 100k and its ANN indexes starve filters (benchmarks/SEARCH_RESULTS.md).
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Iterable, Iterator, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator
from sqlalchemy import ColumnElement, false, func, or_
from sqlmodel import Session, select

from catalog.db import session_for
from catalog.models import Caption, Face, Frame, Media, Person, Tag
from catalog.settings import Library
from catalog import vector_snapshot as snapshots
from catalog.vector_snapshot import VECTOR_CACHE_ENV, VectorSnapshot, collection_signature
from catalog.vectors import VectorStore, image_collection, image_vector_id, wallclock_ts

MAX_TEXT = 500
MAX_NAME = 200
MAX_LIMIT = 1000
MAX_ID_LIST = 10_000  # catalog-side filters larger than this are checked after the vector search instead
MAX_TOPK = 16_384  # Milvus' largest topk
SQL_CHUNK = 900  # bound parameters per IN (...) (SQLite's old limit is 999)

# Tag ranking (MiniLM all-MiniLM-L6-v2 against ImageNet label texts). Measured over the label vocabulary:
# a query's median label similarity is 0.05-0.25 and its 99th percentile 0.25-0.5, while true synonyms score
# 0.55-0.9 ("a cat"/"Egyptian cat" 0.73, "beach"/"seashore" 0.67). Below LABEL_FLOOR a label says nothing.
LABEL_FLOOR = 0.40
LABEL_FULL = 0.75  # similarity at which a label counts as the query itself
MAX_LABELS = 64  # most relevant labels looked up per query (broad words like "dog" match ~120 breeds)
MIN_SCORE = 0.10  # results below this are dropped as unrelated
PLACE_SCORE = 0.6  # the query names a city/region the file was taken in
CAMERA_SCORE = 0.4  # the query names the camera
CAPTION_SCORE = 0.7  # all content words of the query appear in a caption
CLIP_FLOOR, CLIP_SCALE = 0.18, 0.1  # CLIP ViT-B-32 text↔image cosine: unrelated ~0.1-0.18, good match 0.3+
PHASH_BITS = 64
FILTERS_ONLY_WHY = "matches the filters"  # the agent hides this reason from the LLM (assistant/agent.py)

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOPWORDS = frozenset("""a an the of in on at by for with and or to from my our me i we is are was were be this that
these those some any all photo photos picture pictures image images video videos clip clips shot shots taken
show find me of""".split())
_CAMERA_NOISE = frozenset({"corp", "corporation", "co", "ltd", "computer", "imaging", "inc", "company", "digital"})


# --- filters ------------------------------------------------------------------------------------------------

def _parse_when(value: Any) -> date | datetime | None:
    """ISO date ('2019-05-01') or date-time; empty means no bound. Zones are dropped: taken_at is wall-clock."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("dates must be ISO strings like 2019-05-01 or 2019-05-01T12:00")
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        raise ValueError(f"not an ISO date: {text[:40]!r}") from None


When = Annotated[date | datetime | None, PlainValidator(_parse_when)]


class SearchFilters(BaseModel):
    """Validated filters; the only way filter values reach SQL (bound parameters) or Milvus (ints, enums)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    kind: Literal["photo", "video"] | None = None
    date_from: When = None
    date_to: When = None
    year: int | None = Field(default=None, ge=1800, le=2100)
    month: int | None = Field(default=None, ge=1, le=12)
    place: str | None = Field(default=None, max_length=MAX_NAME)
    person: str | None = Field(default=None, max_length=MAX_NAME)
    camera: str | None = Field(default=None, max_length=MAX_NAME)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        """'Photos', 'videos' and '' are what people and small LLMs write."""
        if isinstance(value, str):
            value = value.strip().lower()
            return {"": None, "photos": "photo", "videos": "video", "image": "photo", "images": "photo",
                    "all": None, "any": None}.get(value, value)
        return value

    @field_validator("place", "person", "camera", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected text")
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("year", "month", mode="before")
    @classmethod
    def _empty_int(cls, value: Any) -> Any:
        return None if value == "" else value

    def is_empty(self) -> bool:
        return not any(getattr(self, name) is not None for name in type(self).model_fields)

    def time_bounds(self) -> tuple[datetime | None, datetime | None]:
        """[lo, hi) over taken_at: a date-only `date_to` includes that whole day."""
        lo = _as_datetime(self.date_from)
        hi = None
        if isinstance(self.date_to, datetime):
            hi = self.date_to + timedelta(microseconds=1)
        elif isinstance(self.date_to, date):
            hi = datetime.combine(self.date_to + timedelta(days=1), time())
        return lo, hi

    def needs_catalog(self) -> bool:
        """Place, camera and person live only in the catalog, not as Milvus scalar fields."""
        return any(v is not None for v in (self.place, self.camera, self.person))

    def milvus_expr(self) -> str:
        """The filter as a Milvus expression, from validated ints and enum values only."""
        parts: list[str] = []
        if self.kind is not None:
            parts.append('kind == "photo"' if self.kind == "photo" else 'kind == "video"')
        if self.year is not None:
            parts.append(f"year == {int(self.year)}")
        if self.month is not None:
            parts.append(f"month == {int(self.month)}")
        lo, hi = self.ts_bounds()
        if lo is not None or hi is not None:
            parts.append("taken_ts != 0")  # 0 = unknown date
        if lo is not None:
            parts.append(f"taken_ts >= {int(lo)}")
        if hi is not None:
            parts.append(f"taken_ts < {int(hi)}")
        return " and ".join(parts)

    def ts_bounds(self) -> tuple[int | None, int | None]:
        """[lo, hi) in the vector store's `taken_ts` seconds (wall clock read as UTC)."""
        lo, hi = self.time_bounds()
        return (None if lo is None else wallclock_ts(lo),
                None if hi is None else wallclock_ts(hi) + (1 if hi.microsecond else 0))


def _as_datetime(value: date | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.combine(value, time())


def validate_filters(**filters: Any) -> SearchFilters:
    """SearchFilters from keyword arguments, dropping Nones (raises pydantic.ValidationError on bad values)."""
    return SearchFilters(**{k: v for k, v in filters.items() if v is not None})


def filter_conditions(session: Session, filters: SearchFilters) -> list[ColumnElement[bool]]:
    """WHERE conditions on Media for these filters (active photos and videos only), all bound parameters.

    Place, camera and person names are matched case-insensitively (Unicode casefold) against the distinct
    values in the catalog, in Python, so no LIKE pattern is built from user text.
    """
    # state and kind have one or two values each: SQLite (without ANALYZE statistics) would pick their index
    # and walk most of the table, so they are compared as `col || ''`, which no index matches, leaving the
    # selective indexes (place, year, taken_at, id) to the planner. Same results on PostgreSQL.
    state, kind = Media.state.concat(""), Media.kind.concat("")  # type: ignore[attr-defined]
    conditions: list[ColumnElement[bool]] = [state == "active", kind.in_(["photo", "video"])]
    if filters.kind is not None:
        conditions.append(kind == filters.kind)
    if filters.year is not None:
        conditions.append(Media.year == filters.year)
    if filters.month is not None:
        conditions.append(Media.month == filters.month)
    lo, hi = filters.time_bounds()
    if lo is not None:
        conditions.append(Media.taken_at >= lo)  # type: ignore[operator]
    if hi is not None:
        conditions.append(Media.taken_at < hi)  # type: ignore[operator]
    if filters.place is not None:  # the place label holds city, region and country code (indexed column)
        labels = matching_values(session, Media.place, filters.place)
        conditions.append(Media.place.in_(labels) if labels else false())  # type: ignore[union-attr]
    if filters.camera is not None:
        values = matching_values(session, Media.camera, filters.camera)
        conditions.append(Media.camera.in_(values) if values else false())  # type: ignore[union-attr]
    if filters.person is not None:
        ids = resolve_person(session, filters.person)
        faces = select(Face.media_id).where(Face.person_id.in_(ids))  # type: ignore[union-attr]
        conditions.append(Media.id.in_(faces) if ids else false())  # type: ignore[union-attr]
    return conditions


def fold(text: str) -> str:
    """Case- and accent-insensitive form for matching names ('Hötensleben' ~ 'hotensleben')."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip()


_DISTINCT: dict[tuple[str, str], tuple[int, float, list[str]]] = {}
DISTINCT_TTL = 30.0  # seconds a list of distinct place/camera names is reused while no file was added


def distinct_values(session: Session, column: Any) -> list[str]:
    """Distinct non-null values of an indexed Media text column (place, camera).

    Walking the index costs ~10-40 ms at 100k files, and every search needs these lists, so they are kept
    for DISTINCT_TTL seconds as long as no media row was added (max id unchanged: one index lookup).
    """
    import time as clock

    key = (str(session.get_bind().url), str(column))
    newest = session.exec(select(func.max(Media.id))).one() or 0
    cached = _DISTINCT.get(key)
    if cached and cached[0] == newest and clock.monotonic() - cached[1] < DISTINCT_TTL:
        return cached[2]
    values = list(session.exec(select(column).where(column.is_not(None)).distinct()).all())
    _DISTINCT[key] = (newest, clock.monotonic(), values)
    return values


def matching_values(session: Session, column: Any, needle: str) -> list[str]:
    """Distinct values of a text column that contain `needle` (folded substring match)."""
    wanted = fold(needle)
    return [v for v in distinct_values(session, column) if wanted and wanted in fold(str(v))]


def resolve_person(session: Session, person: str | int) -> list[int]:
    """Person ids for an id ('12') or a name (case-insensitive; exact names first, else names containing it)."""
    text = str(person).strip()
    if text.isdigit():
        return [int(text)] if session.get(Person, int(text)) else []
    named = session.exec(select(Person.id, Person.name).where(Person.name.is_not(None))).all()  # type: ignore[union-attr]
    wanted = fold(text)
    exact = [pid for pid, name in named if fold(name) == wanted]
    return exact or [pid for pid, name in named if wanted and wanted in fold(name)]


# --- pure ranking ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Evidence:
    """One reason a file matches: a 0..1 score, a short text for `why`, and the keyframe time for videos."""

    score: float
    why: str
    frame_time: float | None = None


def label_relevance(similarity: np.ndarray | float, floor: float = LABEL_FLOOR,
                    full: float = LABEL_FULL) -> np.ndarray:
    """Map query↔label cosine to 0..1: nothing below `floor`, everything from `full` up."""
    return np.clip((np.asarray(similarity, dtype=np.float32) - floor) / (full - floor), 0.0, 1.0)


def tag_weight(probability: float) -> float:
    """How much a tag's classifier probability counts: sqrt, so a 0.25 second guess still counts half."""
    return math.sqrt(max(0.0, min(1.0, float(probability))))


def noisy_or(scores: Iterable[float]) -> float:
    """1 - Π(1 - s): one strong signal suffices, several weak ones add up, never above 1."""
    rest = 1.0
    for score in scores:
        rest *= 1.0 - max(0.0, min(1.0, score))
    return 1.0 - rest


@dataclass(frozen=True)
class TagRow:
    media_id: int
    frame_id: int | None
    frame_time: float | None
    label: str
    probability: float


def rank_tags(rows: Iterable[TagRow], relevance: dict[str, float]) -> dict[int, Evidence]:
    """Per media, its best image (photo, or video keyframe) scored by noisy-OR of relevance × tag weight."""
    images: dict[tuple[int, int | None], list[tuple[float, TagRow]]] = {}
    for row in rows:
        rel = relevance.get(row.label, 0.0)
        if rel > 0:
            images.setdefault((row.media_id, row.frame_id), []).append((rel * tag_weight(row.probability), row))
    best: dict[int, Evidence] = {}
    for (media_id, _), scored in images.items():
        scored.sort(key=lambda item: -item[0])
        score = noisy_or(s for s, _ in scored)
        top = scored[0][1]
        labels = ", ".join(f"'{r.label}' {r.probability:.2f}" for _, r in scored[:3])
        where = f" on keyframe at {top.frame_time:.1f}s" if top.frame_time is not None else ""
        evidence = Evidence(score, f"tag {labels}{where}", top.frame_time)
        if media_id not in best or score > best[media_id].score:
            best[media_id] = evidence
    return best


def combine(signals: dict[int, list[Evidence]]) -> dict[int, Evidence]:
    """One Evidence per media: noisy-OR score, reasons strongest first, frame time of the strongest timed one."""
    out: dict[int, Evidence] = {}
    for media_id, items in signals.items():
        items = sorted(items, key=lambda e: -e.score)
        timed = next((e.frame_time for e in items if e.frame_time is not None), None)
        out[media_id] = Evidence(noisy_or(e.score for e in items), "; ".join(e.why for e in items[:3]), timed)
    return out


def content_words(text: str) -> list[str]:
    """Folded words of a query minus stopwords ('a cup of coffee' -> ['cup', 'coffee'])."""
    return [w for w in dict.fromkeys(_WORD.findall(fold(text))) if w not in _STOPWORDS and len(w) > 1]


def mentioned(text: str, names: Iterable[str], min_len: int = 3) -> list[str]:
    """Names (places, camera words) that appear in the text as whole words, case/accent-insensitively."""
    haystack = " " + " ".join(_WORD.findall(fold(text))) + " "
    found = []
    for name in names:
        words = " ".join(_WORD.findall(fold(name)))
        if len(words) >= min_len and f" {words} " in haystack:
            found.append(name)
    return found


def camera_words(camera: str) -> list[str]:
    """The words of a camera name a person would say ('Canon PowerShot S40' -> canon, powershot, s40)."""
    return [w for w in _WORD.findall(fold(camera)) if w not in _CAMERA_NOISE and len(w) >= 3]


def best_frames(hits: Iterable[dict[str, Any]], exclude: set[int] = frozenset()) -> dict[int, dict[str, Any]]:  # type: ignore[assignment]
    """Vector hits grouped by media: the best-scoring vector (keyframe) of each file."""
    best: dict[int, dict[str, Any]] = {}
    for hit in hits:
        media_id = int(hit["media_id"])
        if media_id in exclude:
            continue
        if media_id not in best or hit["score"] > best[media_id]["score"]:
            best[media_id] = hit
    return best


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex perceptual hashes."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def clip_relevance(cosine: float) -> float:
    """0 up to CLIP_FLOOR, then rising and strictly increasing (never saturating, so cosine order is kept)."""
    return 1.0 - math.exp(-max(0.0, float(cosine) - CLIP_FLOOR) / CLIP_SCALE)


# ImageNet labels are WordNet leaves ("pug", "hen", "coho"): alone, MiniLM does not know a pug is a dog
# ("a dog"/"pug" 0.23). Each label is also embedded with its everyday category ("pug, a dog": 0.55) and a
# label counts by the better of the two. Animal groups follow ImageNet's WordNet order (index ranges, checked
# against anchor labels); a few vehicle, flower and fungus groups are listed by name. (A 'building' group
# was tried and dropped: 'church, a building' outranked the palace photo for 'a pagoda temple by a lake'.)
_RANGE_HINTS: dict[str, list[tuple[int, int]]] = {
    "fish": [(0, 6), (389, 397)], "bird": [(7, 24), (80, 100), (127, 146)], "amphibian": [(25, 32)],
    "reptile": [(33, 68)], "dog": [(151, 268)], "wild dog": [(269, 280)], "cat": [(281, 285)],
    "big cat": [(286, 293)], "bear": [(294, 297)], "insect": [(300, 320)], "butterfly": [(321, 326)],
    "rabbit": [(330, 332)], "monkey": [(365, 382)],
}
_RANGE_ANCHORS = {0: "tench", 7: "rooster", 151: "Chihuahua", 268: "Mexican hairless", 281: "tabby cat",
                  285: "Egyptian cat", 330: "wood rabbit", 365: "orangutan", 397: "puffer"}
_NAME_HINTS: dict[str, tuple[str, ...]] = {
    "airplane": ("airliner", "warplane"),
    "boat": ("canoe", "catamaran", "container ship", "fireboat", "gondola", "lifeboat", "liner", "schooner",
             "speedboat", "trimaran", "yawl", "submarine"),
    "car": ("cab", "convertible", "jeep", "limousine", "minivan", "Model T", "racer", "sports car",
            "station wagon", "police van", "ambulance"),
    "truck": ("fire engine", "garbage truck", "pickup", "tow truck", "trailer truck", "moving van"),
    "bus": ("school bus", "trolleybus", "minibus"),
    "motorcycle": ("moped", "motor scooter"),
    "bicycle": ("mountain bike", "bicycle-built-for-two", "tricycle", "unicycle"),
    "train": ("steam locomotive", "electric locomotive", "bullet train", "passenger car", "freight car",
              "streetcar"),
    "mushroom": ("agaric", "bolete", "stinkhorn", "gyromitra", "earthstar", "hen-of-the-woods", "coral fungus"),
    "flower": ("daisy", "yellow lady's slipper"),
}


def hinted_labels(vocabulary: Sequence[str]) -> list[str]:
    """Label texts with their category ('pug, a dog'); unchanged where no group applies."""
    hints: dict[int, str] = {}
    if len(vocabulary) == 1000 and all(vocabulary[i] == name for i, name in _RANGE_ANCHORS.items()):
        for group, ranges in _RANGE_HINTS.items():
            for first, last in ranges:
                hints.update({i: group for i in range(first, last + 1)})
    index = {name: i for i, name in enumerate(vocabulary)}
    for group, names in _NAME_HINTS.items():
        hints.update({index[n]: group for n in names if n in index})
    return [f"{label}, a {hints[i]}" if i in hints else label for i, label in enumerate(vocabulary)]


# --- models (loaded once per process) -------------------------------------------------------------------------

class SearchModels:
    """Lazy holders for the text encoder, label vectors and image embedder, so a process loads each once.

    Tests and the benchmark pass their own instance (e.g. with a stub embedder) to `search`.
    """

    def __init__(self, text_encoder: Any = None, image_embedder: Any = None) -> None:
        self._text_encoder = text_encoder
        self._image_embedder = image_embedder
        self._embedder_error: str | None = None
        self._labels: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def text_encoder(self) -> Any:
        with self._lock:
            if self._text_encoder is None:
                from catalog.model_config import model_spec
                from ingest.analyzers.text import load_text_encoder

                self._text_encoder = load_text_encoder(model_spec("text"))
            return self._text_encoder

    def label_vectors(self, library: Library) -> np.ndarray:
        """(2, 1000, dim): the tag label embeddings and their category-hinted twins, cached under the library."""
        from ingest.analyzers.tags import label_embeddings

        key = str(library.root)
        if key not in self._labels:
            cache = library.root / "cache"
            encoder = self.text_encoder()
            plain = label_embeddings(encoder, cache_dir=cache)
            hinted = _hinted_vectors(encoder, plain, cache)
            self._labels[key] = np.stack([plain, hinted])
        return self._labels[key]

    def image_embedder(self) -> Any | None:
        """The active profile's image embedder, or None (with `embedder_error`) when it is not installed."""
        with self._lock:
            if self._image_embedder is None and self._embedder_error is None:
                from catalog.model_config import model_spec
                from ingest.analyzers import embed
                from ingest.analyzers.base import ModelNotFound

                try:
                    self._image_embedder = embed.load(model_spec("embed"))
                except (ModelNotFound, ImportError) as error:
                    self._embedder_error = str(error)
            return self._image_embedder

    @property
    def embedder_error(self) -> str | None:
        return self._embedder_error


def _hinted_vectors(encoder: Any, plain: np.ndarray, folder: Path) -> np.ndarray:
    """Label embeddings with category hints; labels without a hint reuse their plain vector (~400 encoded)."""
    import hashlib

    from ingest.analyzers.tags import tag_vocabulary

    texts = hinted_labels(tag_vocabulary())
    model_id = re.sub(r"[^0-9A-Za-z_.-]", "_", str(getattr(encoder, "model_id", type(encoder).__name__)))
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    path = folder / f"tag-hints-{model_id}-{digest}.npy"
    try:
        vectors = np.load(path)
        if vectors.shape == plain.shape:
            return vectors.astype(np.float32)
    except (OSError, ValueError):
        pass
    vectors = plain.astype(np.float32).copy()
    changed = [i for i, (text, label) in enumerate(zip(texts, tag_vocabulary())) if text != label]
    if changed:
        vectors[changed] = np.asarray(encoder.encode([texts[i] for i in changed]), dtype=np.float32)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, vectors)
        tmp.replace(path)
    except OSError:  # a read-only library still searches, it just re-embeds next time
        pass
    return vectors


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Encode one query on one thread: on 2 busy cores torch's second thread (spinning against OpenBLAS and
    other processes) made a 20 ms MiniLM query take 50-500 ms; one thread stays at ~20-30 ms."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_DEFAULT_MODELS = SearchModels()
_STORES: dict[str, VectorStore] = {}


def default_models() -> SearchModels:
    return _DEFAULT_MODELS


def vector_store(library: Library) -> VectorStore:
    """One Milvus client per URI per process (opening Milvus Lite costs about a second)."""
    if library.milvus_uri not in _STORES:
        _STORES[library.milvus_uri] = VectorStore(library.milvus_uri)
    return _STORES[library.milvus_uri]


def close_stores() -> None:
    for store in _STORES.values():
        store.close()
    _STORES.clear()


# --- in-process exact vector search: catalog.vector_snapshot (Milvus stays the store) -------------------------

def vector_snapshot(library: Library, collection: str) -> VectorSnapshot | None:
    """The local collection's numpy snapshot; a refresh reuses (and then closes) this process' open client."""
    signature = collection_signature(library, collection)
    if signature is None:
        return None  # a Milvus server, or the cache turned off: search through Milvus
    cached = snapshots.cached_snapshot(library, collection, signature)
    if cached is not None:
        return cached
    return snapshots.vector_snapshot(library, collection, store=_STORES.pop(library.milvus_uri, None))


def snapshot_mask(snapshot: VectorSnapshot, filters: SearchFilters, allowed: np.ndarray | None,
                  exclude: set[int]) -> np.ndarray | None:
    """The snapshot rows passing the filters, from the same validated values as `milvus_expr`."""
    ts_from, ts_to = filters.ts_bounds()
    return snapshot.rows_where(kind=filters.kind, year=filters.year, month=filters.month, ts_from=ts_from,
                               ts_to=ts_to, allowed=allowed, exclude=exclude)


# --- the search ---------------------------------------------------------------------------------------------

class SearchRequest(SearchFilters):
    """Everything `search_media` accepts; validated before anything touches a store."""

    text: str | None = Field(default=None, max_length=MAX_TEXT)
    image: str | None = Field(default=None, max_length=4096)
    limit: int = Field(default=20, ge=1, le=MAX_LIMIT)
    sort: Literal["relevance", "newest", "oldest"] = "relevance"
    min_score: float | None = Field(default=None, ge=0.0, le=1.0)

    @field_validator("text", mode="before")
    @classmethod
    def _blank_text(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("image", mode="before")
    @classmethod
    def _image_ref(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a path or a media id")
        if isinstance(value, (int, Path)):
            return str(value)
        return None if isinstance(value, str) and not value.strip() else value

    def filters(self) -> SearchFilters:
        return SearchFilters(**{name: getattr(self, name) for name in SearchFilters.model_fields})


@dataclass
class SearchOutcome:
    results: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def search_media(library: Library, text: str | None = None, image: str | int | Path | None = None,
                 kind: str | None = None, date_from: str | date | None = None, date_to: str | date | None = None,
                 year: int | None = None, month: int | None = None, place: str | None = None,
                 person: str | int | None = None, camera: str | None = None, limit: int = 20,
                 **options: Any) -> list[dict[str, Any]]:
    """Photos and videos matching text and/or an image under filters, best first (filters alone: newest first).

    Each result: media_id, path, kind, score (0..1, None for filters alone), taken_at (ISO), place,
    frame_time (videos: time of the best keyframe), why. `options`: sort ('relevance'|'newest'|'oldest',
    applied to the relevance-capped set), min_score, models (a SearchModels).
    """
    return search(library, text=text, image=image, kind=kind, date_from=date_from, date_to=date_to, year=year,
                  month=month, place=place, person=person, camera=camera, limit=limit, **options).results


def find_similar(library: Library, path_or_media_id: str | int | Path, limit: int = 20,
                 **filters: Any) -> list[dict[str, Any]]:
    """Files that look like this one (a library file by path or id, or any image file), itself excluded."""
    return search_media(library, image=path_or_media_id, limit=limit, **filters)


def search(library: Library, models: SearchModels | None = None, **arguments: Any) -> SearchOutcome:
    """`search_media` with warnings (what the tool envelope reports), e.g. 'no person named X'."""
    request = SearchRequest(**{k: v for k, v in arguments.items() if v is not None})
    models = models or default_models()
    outcome = SearchOutcome()
    filters = request.filters()
    with session_for(library.database_url) as session:
        conditions = filter_conditions(session, filters)
        _filter_warnings(session, filters, outcome.warnings)
        if request.text is None and request.image is None:
            outcome.results = _filters_only(session, conditions, request)
            return outcome
        signals: dict[int, list[Evidence]] = {}
        if request.text is not None:
            _text_signals(session, library, models, request, filters, conditions, signals, outcome.warnings)
        if request.image is not None:
            _image_signals(session, library, models, request, filters, conditions, signals, outcome.warnings)
        ranked = combine(signals)
        outcome.results = _rows_for(session, conditions, ranked, request)
    return outcome


def _filter_warnings(session: Session, filters: SearchFilters, warnings: list[str]) -> None:
    if filters.person is not None and not resolve_person(session, filters.person):
        warnings.append(f"no person named or numbered {filters.person!r}; `people` lists them")
    if filters.place is not None and not matching_values(session, Media.place, filters.place):
        warnings.append(f"no file was taken at a place matching {filters.place!r}")
    if filters.camera is not None and not matching_values(session, Media.camera, filters.camera):
        warnings.append(f"no file was taken with a camera matching {filters.camera!r}")
    lo, hi = filters.time_bounds()
    if lo is not None and hi is not None and lo >= hi:
        warnings.append("date_from is after date_to: no date can match")


def _newest_first() -> list[Any]:
    return [Media.taken_at.desc().nulls_last(), Media.id.desc()]  # type: ignore[union-attr]


def _filters_only(session: Session, conditions: list[ColumnElement[bool]], request: SearchRequest) -> list[dict]:
    order = [Media.taken_at.asc().nulls_last(), Media.id.asc()] if request.sort == "oldest" else _newest_first()  # type: ignore[union-attr]
    rows = session.exec(select(Media).where(*conditions).order_by(*order).limit(request.limit)).all()
    return [_result(m, None, Evidence(0.0, FILTERS_ONLY_WHY)) for m in rows]


def _text_signals(session: Session, library: Library, models: SearchModels, request: SearchRequest,
                  filters: SearchFilters, conditions: list[ColumnElement[bool]],
                  signals: dict[int, list[Evidence]], warnings: list[str]) -> None:
    text = request.text or ""
    if session.exec(select(Tag.id).limit(1)).first() is not None:  # no tags yet: don't load MiniLM for nothing
        try:
            encoder = models.text_encoder()
            with one_torch_thread():
                query = np.asarray(encoder.encode([text])[0], dtype=np.float32)
            labels = models.label_vectors(library)
        except Exception as error:  # noqa: BLE001 - a missing text model degrades search, it must not break it
            warnings.append(f"tag search unavailable: {error}")
        else:
            for media_id, evidence in _tag_evidence(session, query, labels, conditions).items():
                signals.setdefault(media_id, []).append(evidence)
    for media_id, evidence in _name_evidence(session, text, conditions, request.limit).items():
        signals.setdefault(media_id, []).extend(evidence)
    for media_id, evidence in _caption_evidence(session, text, conditions).items():
        signals.setdefault(media_id, []).append(evidence)
    embedder = models.image_embedder()
    if embedder is not None and getattr(embedder, "text_aligned", False):
        collection = image_collection(embedder.model_id)
        try:
            with one_torch_thread():
                vector = np.asarray(embedder.encode_text([text])[0], dtype=np.float32)
            hits = _vector_hits(session, library, collection, vector, filters, conditions,
                                request.limit * 3, set())
        except Exception as error:  # noqa: BLE001 - the vector store being down must not stop tag search
            warnings.append(f"image-text vector search unavailable: {error}")
            return
        for media_id, hit in hits.items():
            score = clip_relevance(hit["score"])
            if score > 0:
                signals.setdefault(media_id, []).append(Evidence(
                    score, f"image-text similarity {hit['score']:.2f}{_at(hit)}", _hit_time(hit)))


def _tag_evidence(session: Session, query: np.ndarray, label_vectors: np.ndarray,
                  conditions: list[ColumnElement[bool]]) -> dict[int, Evidence]:
    from ingest.analyzers.tags import tag_vocabulary

    vocabulary = tag_vocabulary()
    relevance = label_relevance((label_vectors @ query).max(axis=0))
    top = [i for i in np.argsort(-relevance)[:MAX_LABELS] if relevance[i] > 0]
    wanted = {vocabulary[i]: float(relevance[i]) for i in top}
    if not wanted:
        return {}
    rows = session.exec(
        select(Tag.media_id, Tag.frame_id, Frame.time, Tag.label, Tag.score)
        .join(Media, Media.id == Tag.media_id).outerjoin(Frame, Frame.id == Tag.frame_id)  # type: ignore[arg-type]
        .where(Tag.label.in_(list(wanted)), *conditions)).all()  # type: ignore[attr-defined]
    return rank_tags((TagRow(*row) for row in rows), wanted)


def _name_evidence(session: Session, text: str, conditions: list[ColumnElement[bool]],
                   limit: int) -> dict[int, list[Evidence]]:
    """Files taken at a place, or with a camera, that the query names ('in Stockholm', 'my Canon').

    Names come from the distinct values of the indexed place and camera columns (a few hundred at most), so
    this costs two index scans, not a table scan, on a large library.
    """
    cap = max(limit * 20, 500)  # a place can hold 100k files: the newest few hundred are plenty to blend
    out: dict[int, list[Evidence]] = {}
    labels = distinct_values(session, Media.place)
    parts = {label: [p.strip() for p in label.split(",")] for label in labels}
    for name in mentioned(text, {p for ps in parts.values() for p in ps}):
        matching = [label for label, ps in parts.items() if name in ps]
        ids = session.exec(select(Media.id).where(Media.place.in_(matching), *conditions)  # type: ignore[union-attr]
                           .order_by(*_newest_first()).limit(cap)).all()
        for media_id in ids:
            items = out.setdefault(media_id, [])
            if not any(e.why.startswith("place") for e in items):
                items.append(Evidence(PLACE_SCORE, f"place: {name}"))
    cameras = distinct_values(session, Media.camera)
    words = set(_WORD.findall(fold(text)))
    named = [c for c in cameras if words & set(camera_words(c))]
    if named:
        ids = session.exec(select(Media.id, Media.camera).where(Media.camera.in_(named), *conditions)  # type: ignore[union-attr]
                           .order_by(*_newest_first()).limit(cap)).all()
        for media_id, camera in ids:
            out.setdefault(media_id, []).append(Evidence(CAMERA_SCORE, f"camera: {camera}"))
    return out


def _caption_evidence(session: Session, text: str, conditions: list[ColumnElement[bool]]) -> dict[int, Evidence]:
    """Captions that contain the query's content words (whole-word, folded); only profiles with captions."""
    words = content_words(text)[:8]
    if not words or session.exec(select(Caption.id).limit(1)).first() is None:
        return {}
    rows = session.exec(select(Caption.media_id, Caption.text, Frame.time)
                        .join(Media, Media.id == Caption.media_id)
                        .outerjoin(Frame, Frame.id == Caption.frame_id)  # type: ignore[arg-type]
                        .where(or_(*[Caption.text.contains(w, autoescape=True) for w in words]),  # type: ignore[attr-defined]
                               *conditions)).all()
    best: dict[int, Evidence] = {}
    for media_id, caption, frame_time in rows:
        present = set(_WORD.findall(fold(caption)))
        share = sum(w in present for w in words) / len(words)
        if share > 0 and (media_id not in best or CAPTION_SCORE * share > best[media_id].score):
            where = f" at {frame_time:.1f}s" if frame_time is not None else ""
            best[media_id] = Evidence(CAPTION_SCORE * share, f"caption{where}: {caption[:80]}", frame_time)
    return best


def _at(hit: dict[str, Any]) -> str:
    return f" on keyframe at {hit['time']:.1f}s" if hit.get("kind") == "video" else ""


def _hit_time(hit: dict[str, Any]) -> float | None:
    return float(hit["time"]) if hit.get("kind") == "video" else None


def _vector_hits(session: Session, library: Library, collection: str, vector: np.ndarray,
                 filters: SearchFilters, conditions: list[ColumnElement[bool]], want: int,
                 exclude: set[int]) -> dict[int, dict[str, Any]]:
    """Best vector per media with the filters inside the vector search; at least `want` files when they exist.

    Local libraries search the in-process snapshot (exact; any filter becomes a row mask). Through Milvus,
    scalar filters go into the expression and place/camera/person become `media_id in [...]` (validated ints)
    when that list is small; otherwise hits are checked against the catalog and the search widens (x4) until
    enough files pass or the collection is exhausted, so a selective filter never starves the result.
    """
    snapshot = vector_snapshot(library, collection)
    if snapshot is not None:
        allowed = None
        if filters.needs_catalog():
            allowed = np.asarray(session.exec(select(Media.id).where(*conditions)).all(), dtype=np.int64)
            if not len(allowed):
                return {}
        return snapshot.search(vector, snapshot_mask(snapshot, filters, allowed, exclude), want)
    store = vector_store(library)
    expr = filters.milvus_expr()
    ids_in_expr = False
    if filters.needs_catalog():
        ids = session.exec(select(Media.id).where(*conditions).limit(MAX_ID_LIST + 1)).all()
        if not ids:
            return {}
        if len(ids) <= MAX_ID_LIST:
            ids_in_expr = True
            id_list = ", ".join(str(int(i)) for i in sorted(ids))
            expr = f"{expr} and media_id in [{id_list}]" if expr else f"media_id in [{id_list}]"
    k = min(max(want * 4, 64), MAX_TOPK)
    while True:
        hits = store.search_images(collection, vector.tolist(), k, expr)
        best = best_frames(hits, exclude)
        # scalar filters were exact inside Milvus; catalog-only filters too when passed as an id list
        passing = set(best) if ids_in_expr or not filters.needs_catalog() else \
            _existing(session, conditions, best)
        if len(passing) >= want or len(hits) < k or k >= MAX_TOPK:
            return {m: best[m] for m in passing}
        k = min(k * 4, MAX_TOPK)


def _existing(session: Session, conditions: list[ColumnElement[bool]], ids: Iterable[int]) -> set[int]:
    """Which of these media ids pass the filter conditions in the catalog (chunked bound IN lists)."""
    ids = list(ids)
    found: set[int] = set()
    for start in range(0, len(ids), SQL_CHUNK):
        chunk = ids[start:start + SQL_CHUNK]
        found.update(session.exec(select(Media.id).where(Media.id.in_(chunk), *conditions)).all())  # type: ignore[union-attr]
    return found


def _image_signals(session: Session, library: Library, models: SearchModels, request: SearchRequest,
                   filters: SearchFilters, conditions: list[ColumnElement[bool]],
                   signals: dict[int, list[Evidence]], warnings: list[str]) -> None:
    query = _resolve_query_image(session, request.image or "")
    exclude = {query.media_id} if query.media_id is not None else set()
    exclude |= query.same_content
    vectors, collection = _query_vectors(library, models, query, warnings)
    if vectors:
        merged: dict[int, dict[str, Any]] = {}
        for vector in vectors[:8]:  # a video query: each of its first keyframes, best match per file
            for media_id, hit in _vector_hits(session, library, collection or "", vector, filters, conditions,
                                              request.limit, exclude).items():
                if media_id not in merged or hit["score"] > merged[media_id]["score"]:
                    merged[media_id] = hit
        for media_id, hit in merged.items():
            signals.setdefault(media_id, []).append(Evidence(
                max(0.0, float(hit["score"])), f"similar image (cosine {hit['score']:.2f}){_at(hit)}", _hit_time(hit)))
        return
    phash = query.phash or _phash_of(query.path, warnings)
    if phash is None:
        warnings.append("cannot compare images: no vectors and no perceptual hash for the query")
        return
    rows = session.exec(select(Media.id, Media.phash).where(Media.phash.is_not(None), *conditions)).all()  # type: ignore[union-attr]
    for media_id, other in rows:
        if media_id in exclude:
            continue
        distance = hamming(phash, other)
        if distance <= PHASH_BITS // 3:
            signals.setdefault(media_id, []).append(
                Evidence(1.0 - distance / PHASH_BITS, f"looks alike (perceptual hash distance {distance})"))


@dataclass
class QueryImage:
    path: str | None
    media_id: int | None = None
    kind: str = "photo"
    frame_idx: list[int] = field(default_factory=list)
    phash: str | None = None
    same_content: set[int] = field(default_factory=set)


def _resolve_query_image(session: Session, ref: str) -> QueryImage:
    """A library file (by id or path), else a readable image/video file anywhere; raises ValueError if neither."""
    import os

    from tools.library import find_media

    media = find_media(session, ref)
    if media is not None:
        frames = session.exec(select(Frame.idx).where(Frame.media_id == media.id).order_by(Frame.idx)).all()
        return QueryImage(media.path, media.id, media.kind, list(frames), media.phash)
    if ref.isdigit() and not os.path.exists(ref):
        raise ValueError(f"no media with id {ref}")
    if not os.path.isfile(ref):
        raise ValueError(f"not a file: {ref[:200]}")
    from ingest.detect import UnsupportedMedia, detect
    from ingest.hashing import content_hash

    try:
        kind = detect(ref).kind
    except UnsupportedMedia as error:
        raise ValueError(f"not a photo or video: {error}") from None
    same = set(session.exec(select(Media.id).where(Media.content_hash == content_hash(ref))).all())
    return QueryImage(ref, None, kind, same_content=same)


def _query_vectors(library: Library, models: SearchModels, query: QueryImage,
                   warnings: list[str]) -> tuple[list[np.ndarray], str | None]:
    """Stored vectors of a library file, else the active embedder run on the decoded file; [] if neither."""
    embedder = models.image_embedder()
    if embedder is None:
        warnings.append(f"image embedder unavailable ({models.embedder_error}); comparing perceptual hashes")
        return [], None
    collection = image_collection(embedder.model_id)
    slots = query.frame_idx if query.kind == "video" else [None]
    snapshot = vector_snapshot(library, collection)
    if snapshot is not None:
        if query.media_id is not None:
            found = [snapshot.vector_of(image_vector_id(query.media_id, idx)) for idx in slots[:8]]
            if vectors := [v for v in found if v is not None]:
                return vectors, collection
        images = _decode_query(query, warnings)
        return ([np.asarray(v, dtype=np.float32) for v in embedder.run(images)] if images else []), collection
    store = vector_store(library)
    try:
        if not store.client.has_collection(collection):
            warnings.append("no image vectors in this library yet (run ingest with the embed analyzer); "
                            "comparing perceptual hashes")
            return [], None
        if query.media_id is not None:
            stored = [store.image_vector(collection, image_vector_id(query.media_id, idx)) for idx in slots[:8]]
            vectors = [np.asarray(v, dtype=np.float32) for v in stored if v is not None]
            if vectors:
                return vectors, collection
    except Exception as error:  # noqa: BLE001 - a broken vector store falls back to perceptual hashes
        warnings.append(f"vector store unavailable ({error}); comparing perceptual hashes")
        return [], None
    images = _decode_query(query, warnings)
    if not images:
        return [], None
    return [np.asarray(v, dtype=np.float32) for v in embedder.run(images)], collection


def _decode_query(query: QueryImage, warnings: list[str]) -> list[Any]:
    from ingest.media import THUMB_LARGE, DecodeError, open_image

    if query.path is None:
        return []
    try:
        if query.kind == "video":
            from ingest.video import extract_keyframes

            return [k.image for k in extract_keyframes(query.path, max_frames=8, max_side=THUMB_LARGE)]
        return [open_image(query.path, max_side=THUMB_LARGE)]
    except (DecodeError, OSError) as error:
        warnings.append(f"cannot decode the query file: {error}")
        return []


def _phash_of(path: str | None, warnings: list[str]) -> str | None:
    """The query's perceptual hash exactly as extract computes it (upright, long side 256)."""
    images = _decode_query(QueryImage(path), warnings) if path else []
    if not images:
        return None
    import imagehash

    from ingest.media import THUMB_SMALL, resize_to_fit

    return str(imagehash.phash(resize_to_fit(images[0], THUMB_SMALL)))


def _rows_for(session: Session, conditions: list[ColumnElement[bool]], ranked: dict[int, Evidence],
              request: SearchRequest) -> list[dict[str, Any]]:
    """Result dicts for ranked media that pass the filters, cut off, sorted, limited."""
    floor = MIN_SCORE if request.min_score is None else request.min_score
    if request.image is not None and request.text is None and request.min_score is None:
        floor = 0.0  # "similar to this" always answers with the nearest files
    keep = {m: e for m, e in ranked.items() if e.score >= floor}
    ordered = sorted(keep, key=lambda m: -keep[m].score)
    media: dict[int, Media] = {}
    fetched, step = 0, len(ordered) if request.sort != "relevance" else max(2 * request.limit, 64)
    while fetched < len(ordered):  # best first, a slice at a time, until `limit` pass (ties at the cut included)
        chunk, fetched = ordered[fetched:fetched + step], fetched + step
        media.update(_media_rows(session, conditions, chunk))
        passing = [m for m in ordered[:fetched] if m in media]
        if (len(passing) >= request.limit and fetched < len(ordered)
                and keep[ordered[fetched]].score < keep[passing[request.limit - 1]].score):
            break
        step *= 4
    order = sorted(media, key=lambda m: (-keep[m].score, _neg_time(media[m]), -m))
    if request.sort != "relevance":  # date order of the relevance-capped set; undated files last
        sign = -1 if request.sort == "newest" else 1
        order.sort(key=lambda m: (media[m].taken_at is None, sign * wallclock_ts(media[m].taken_at)))
    return [_result(media[m], keep[m].score, keep[m]) for m in order[:request.limit]]


def _media_rows(session: Session, conditions: list[ColumnElement[bool]], ids: list[int]) -> dict[int, Media]:
    rows: dict[int, Media] = {}
    for start in range(0, len(ids), SQL_CHUNK):
        chunk = ids[start:start + SQL_CHUNK]
        for row in session.exec(select(Media).where(Media.id.in_(chunk), *conditions)).all():  # type: ignore[union-attr]
            rows[row.id or 0] = row
    return rows


def _neg_time(media: Media) -> float:
    return -wallclock_ts(media.taken_at) if media.taken_at else math.inf


def _result(media: Media, score: float | None, evidence: Evidence) -> dict[str, Any]:
    frame_time = evidence.frame_time if media.kind == "video" else None
    return {"media_id": media.id, "path": media.path, "kind": media.kind,
            "score": None if score is None else round(float(score), 4),
            "taken_at": media.taken_at.isoformat() if media.taken_at else None, "place": media.place,
            "frame_time": None if frame_time is None else round(float(frame_time), 3), "why": evidence.why}


def media_rows(session: Session, filters: SearchFilters) -> Sequence[Media]:
    """All active media passing the filters (for stats, albums and organize)."""
    return session.exec(select(Media).where(*filter_conditions(session, filters)).order_by(*_newest_first())).all()
