"""Counts and group-bys over the catalog: most questions to the assistant are these, not vector searches.

Every function takes the same filters as `search_media`, validated by the same `SearchFilters` model, and
answers with one SQL GROUP BY (bound parameters only).
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import func
from sqlmodel import select

from catalog.db import session_for
from catalog.models import Media
from catalog.settings import Library
from tools.search import filter_conditions, validate_filters


def count_media(library: Library, **filters: Any) -> dict[str, int]:
    """How many photos and videos match: {"total", "photo", "video"}."""
    spec = validate_filters(**filters)
    with session_for(library.database_url) as session:
        rows = session.exec(select(Media.kind, func.count()).where(*filter_conditions(session, spec))
                            .group_by(Media.kind)).all()
    counts = {"photo": 0, "video": 0, **{kind: n for kind, n in rows}}
    return {"total": counts["photo"] + counts["video"], "photo": counts["photo"], "video": counts["video"]}


def timeline(library: Library, by: Literal["year", "month"] = "month", **filters: Any) -> dict[str, Any]:
    """Counts per year (or year and month), oldest first, plus how many files have no known date."""
    if by not in ("year", "month"):
        raise ValueError("by must be 'year' or 'month'")
    spec = validate_filters(**filters)
    keys = [Media.year] if by == "year" else [Media.year, Media.month]
    with session_for(library.database_url) as session:
        rows = session.exec(select(*keys, Media.kind, func.count()).where(*filter_conditions(session, spec))
                            .group_by(*keys, Media.kind)).all()
    buckets: dict[tuple, dict[str, int]] = {}
    undated = 0
    for *key, kind, n in rows:
        if key[0] is None:
            undated += n
            continue
        bucket = buckets.setdefault(tuple(key), {"photo": 0, "video": 0})
        bucket[kind] = bucket.get(kind, 0) + n
    periods = []
    for key in sorted(buckets, key=lambda k: tuple(v or 0 for v in k)):
        entry: dict[str, Any] = {"year": key[0]}
        if by == "month":
            entry["month"] = key[1]
        entry.update(count=buckets[key]["photo"] + buckets[key]["video"], **buckets[key])
        periods.append(entry)
    return {"by": by, "periods": periods, "undated": undated}


def places(library: Library, limit: int = 100, **filters: Any) -> dict[str, Any]:
    """Where files were taken, most files first: place label, city, region, country and count."""
    spec = validate_filters(**filters)
    with session_for(library.database_url) as session:
        conditions = filter_conditions(session, spec)
        rows = session.exec(select(Media.place, Media.city, Media.region, Media.country, func.count())
                            .where(Media.place.is_not(None), *conditions)  # type: ignore[union-attr]
                            .group_by(Media.place, Media.city, Media.region, Media.country)
                            .order_by(func.count().desc(), Media.place).limit(max(1, min(limit, 10_000)))).all()
        unknown = session.exec(select(func.count()).select_from(Media)
                               .where(Media.place.is_(None), *conditions)).one()  # type: ignore[union-attr]
    return {"places": [{"place": p, "city": c, "region": r, "country": k, "count": n} for p, c, r, k, n in rows],
            "unknown": unknown}
