"""People as tools: who is in the library, where a person appears, who appears with whom; naming and merging.

Thin over `ingest.people` (which owns the rows); a person is given by id or by name (case-insensitive).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import select

from catalog.db import session_for
from catalog.models import Face, Media, Person
from catalog.settings import Library
from ingest import people as people_rows
from tools.search import MAX_NAME, resolve_person, search_media


class UnknownPerson(LookupError):
    """No person has this id or name."""


def list_people(library: Library, limit: int | None = None) -> list[dict[str, Any]]:
    """People, most faces first: id, name (None until named), face count, files they appear in."""
    with session_for(library.database_url) as session:
        people = people_rows.list_people(session)
    return people[:limit] if limit else people


def _person_ids(library: Library, person: str | int) -> list[int]:
    text = str(person).strip()
    if not text or len(text) > MAX_NAME:
        raise UnknownPerson("give a person id or a name")
    with session_for(library.database_url) as session:
        ids = resolve_person(session, text)
    if not ids:
        raise UnknownPerson(f"no person named or numbered {text!r}")
    return ids


def media_with(library: Library, person: str | int, limit: int = 50, **filters: Any) -> list[dict[str, Any]]:
    """Files showing this person, newest first (other search filters apply too)."""
    _person_ids(library, person)
    return search_media(library, person=str(person), limit=limit, **filters)


def people_with(library: Library, person: str | int, limit: int = 10) -> list[dict[str, Any]]:
    """Who appears most often in the same files as this person: [{person_id, name, shared_media}]."""
    ids = _person_ids(library, person)
    with session_for(library.database_url) as session:
        theirs = select(Face.media_id).join(Media, Media.id == Face.media_id).where(  # type: ignore[arg-type]
            Face.person_id.in_(ids), Media.state == "active")  # type: ignore[union-attr]
        shared = func.count(func.distinct(Face.media_id))
        rows = session.exec(select(Face.person_id, Person.name, shared)
                            .join(Person, Person.id == Face.person_id)  # type: ignore[arg-type]
                            .where(Face.media_id.in_(theirs), Face.person_id.not_in(ids))  # type: ignore[union-attr]
                            .group_by(Face.person_id, Person.name)
                            .order_by(shared.desc(), Face.person_id).limit(max(1, limit))).all()
    return [{"person_id": pid, "name": name, "shared_media": n} for pid, name, n in rows]


def name_person(library: Library, person_id: int, name: str) -> dict[str, Any]:
    """Give a person a name (it survives re-clustering)."""
    if len(name) > MAX_NAME:
        raise ValueError(f"a name is at most {MAX_NAME} characters")
    with session_for(library.database_url) as session:
        person = people_rows.name_person(session, int(person_id), name)
        return {"person_id": person.id, "name": person.name}


def merge_people(library: Library, keep: int | str, other: int | str) -> dict[str, Any]:
    """Move every face of `other` into `keep` (ids or unique names)."""
    keep_ids, other_ids = _person_ids(library, keep), _person_ids(library, other)
    if len(keep_ids) != 1 or len(other_ids) != 1:
        raise UnknownPerson("several people match that name; use person ids")
    with session_for(library.database_url) as session:
        person = people_rows.merge_people(session, keep_ids[0], other_ids[0])
        return {"person_id": person.id, "name": person.name, "merged": other_ids[0]}
