"""Faces → people in the catalog: incremental clustering, and the user's names and merges, which stick.

The clustering itself is a pure function (`ingest.cluster.cluster_faces`); this module only moves rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, update
from sqlmodel import Session, select

from catalog.models import Face, Media, Person
from ingest.cluster import FaceRef, cluster_faces


def recluster(session: Session) -> dict[str, int]:
    """Assign unassigned faces to people (existing ones first), creating people for new clusters."""
    named = {p.id for p in session.exec(select(Person).where(Person.name.is_not(None))).all()}  # type: ignore[union-attr]
    rows = session.exec(select(Face).join(Media).where(Media.state == "active", Face.embedding.is_not(None))).all()  # type: ignore[union-attr]
    refs = [FaceRef(face_id=f.id or 0, media_id=f.media_id, embedding=np.frombuffer(f.embedding or b"", np.float32),
                    quality=f.quality, person_id=f.person_id, locked=f.person_id in named) for f in rows]
    labels = cluster_faces(refs)
    new_people: dict[int, Person] = {}
    assigned = 0
    for face in rows:
        label = labels.get(face.id or 0)
        if label is None or label == face.person_id:
            continue
        if label < 0:
            if label not in new_people:
                new_people[label] = Person()
                session.add(new_people[label])
                session.flush()
            label = new_people[label].id
        face.person_id = label
        session.add(face)
        assigned += 1
    session.commit()
    _drop_empty_people(session)
    return {"faces": len(rows), "assigned": assigned, "new_people": len(new_people)}


def _drop_empty_people(session: Session) -> None:
    used = select(Face.person_id).where(Face.person_id.is_not(None))  # type: ignore[union-attr]
    for person in session.exec(select(Person).where(Person.id.not_in(used), Person.name.is_(None))).all():  # type: ignore[union-attr]
        session.delete(person)
    session.commit()


def name_person(session: Session, person_id: int, name: str) -> Person:
    person = session.get(Person, person_id)
    if person is None:
        raise KeyError(f"no person with id {person_id}")
    name = name.strip()
    if not name:
        raise ValueError("a name cannot be empty")
    person.name = name
    session.add(person)
    session.commit()
    return person


def merge_people(session: Session, keep_id: int, other_id: int) -> Person:
    """Move all faces of `other` into `keep`; `keep` takes `other`'s name if it had none."""
    keep, other = session.get(Person, keep_id), session.get(Person, other_id)
    if keep is None or other is None:
        raise KeyError(f"no person with id {keep_id if keep is None else other_id}")
    if keep_id == other_id:
        return keep
    session.exec(update(Face).where(Face.person_id == other_id).values(person_id=keep_id))  # type: ignore[call-overload]
    keep.name = keep.name or other.name
    session.delete(other)
    session.add(keep)
    session.commit()
    return keep


def list_people(session: Session) -> list[dict[str, Any]]:
    """People with their face counts and the files they appear in, most frequent first."""
    counts = session.exec(select(Face.person_id, func.count()).where(Face.person_id.is_not(None))  # type: ignore[union-attr]
                          .group_by(Face.person_id)).all()
    people = []
    for person_id, n in sorted(counts, key=lambda row: -row[1]):
        person = session.get(Person, person_id)
        paths = session.exec(select(Media.path).join(Face).where(Face.person_id == person_id).distinct()
                             .order_by(Media.path)).all()
        people.append({"person_id": person_id, "name": person.name if person else None, "faces": n,
                       "media": list(paths)})
    return people
