"""Smart albums: saved searches (text and filters) that are re-run on demand, so new files join them.

The `album` table is defined here rather than in catalog/models.py; `_ready` creates it on first use
(`create_all` only adds missing tables), since `catalog.db.engine_for` may have run before this module loaded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from pydantic import NaiveDatetime
from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel, select

from catalog.db import engine_for, session_for
from catalog.models import utcnow
from catalog.settings import Library
from tools.search import MAX_NAME, SearchRequest, search_media

_READY: set[str] = set()


class Album(SQLModel, table=True):
    """A named saved search; `query` holds validated search_media arguments (text and filters)."""

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=MAX_NAME)
    query: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: NaiveDatetime = Field(default_factory=utcnow)


def _ready(library: Library) -> None:
    if library.database_url not in _READY:
        SQLModel.metadata.create_all(engine_for(library.database_url), tables=[Album.__table__])  # type: ignore[attr-defined]
        _READY.add(library.database_url)


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"an album name is 1..{MAX_NAME} characters")
    return name


def save_album(library: Library, name: str, replace: bool = False, **search: Any) -> dict[str, Any]:
    """Save (or with `replace`, overwrite) a smart album from search_media arguments (text and/or filters)."""
    name = _clean_name(name)
    search.pop("limit", None)
    request = SearchRequest(**{k: v for k, v in search.items() if v is not None})
    query = request.model_dump(mode="json", exclude_none=True, exclude={"limit", "sort"} if request.sort ==
                               "relevance" else {"limit"})
    if not query:
        raise ValueError("an album needs some text or at least one filter")
    _ready(library)
    with session_for(library.database_url) as session:
        album = session.exec(select(Album).where(Album.name == name)).first()
        if album is not None and not replace:
            raise ValueError(f"an album named {name!r} exists; replace it (CLI: --replace) to change it")
        album = album or Album(name=name)
        album.query = query
        session.add(album)
        session.commit()
        return {"name": album.name, "query": album.query, "created_at": _iso(album.created_at)}


def list_albums(library: Library) -> list[dict[str, Any]]:
    _ready(library)
    with session_for(library.database_url) as session:
        albums = session.exec(select(Album).order_by(Album.name)).all()
        return [{"name": a.name, "query": a.query, "created_at": _iso(a.created_at)} for a in albums]


def album_media(library: Library, name: str, limit: int = 100) -> list[dict[str, Any]]:
    """Run the album's saved search now."""
    _ready(library)
    with session_for(library.database_url) as session:
        album = session.exec(select(Album).where(Album.name == _clean_name(name))).first()
    if album is None:
        raise KeyError(f"no album named {name!r}")
    return search_media(library, limit=limit, **album.query)


def delete_album(library: Library, name: str) -> bool:
    _ready(library)
    with session_for(library.database_url) as session:
        album = session.exec(select(Album).where(Album.name == _clean_name(name))).first()
        if album is None:
            return False
        session.delete(album)
        session.commit()
        return True


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
