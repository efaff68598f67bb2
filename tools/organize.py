"""A browsable folder tree of symlinks to the originals, by year, month, place or person.

Originals are never moved, renamed or written: only links are created, only under DEST, and DEST may not
be inside a source folder (the next scan would index the links). A dry run (the default) reports exactly
what `apply` would do. Existing links to the same file are left alone; nothing that is not our link is
ever replaced.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlmodel import select

from catalog.db import session_for
from catalog.models import Face, Media, Person, Source
from catalog.settings import Library
from tools.search import media_rows, validate_filters

Grouping = Literal["year", "month", "place", "person"]
_UNSAFE = re.compile(r"[\x00-\x1f/\\:*?\"<>|]+")
MONTHS = ("01-Jan", "02-Feb", "03-Mar", "04-Apr", "05-May", "06-Jun", "07-Jul", "08-Aug", "09-Sep", "10-Oct",
          "11-Nov", "12-Dec")
REPORT_LINKS = 1000  # planned links listed in the report (all are counted)


@dataclass
class Plan:
    links: list[tuple[Path, bytes]] = field(default_factory=list)  # (link path, target original path)
    skipped: dict[str, int] = field(default_factory=dict)


def folder_name(text: str) -> str:
    """A safe single path component: no separators or control characters, never '.'/'..' or hidden."""
    name = _UNSAFE.sub("_", text).strip().lstrip(".").strip()
    return name[:120] or "_"


def folders_for(media: Media, by: Grouping, people: dict[int, list[str]]) -> list[list[str]]:
    """The folder path(s) one file goes into; a file with several people goes under each of them."""
    if by == "person":
        return [[name] for name in people.get(media.id or 0, [])]
    if by == "place":
        if not media.place:
            return [["Unknown place"]]
        return [[media.country or "Unknown country", media.city or media.place]]
    if media.taken_at is None:
        return [["Undated"]]
    if by == "year":
        return [[f"{media.taken_at.year:04d}"]]
    return [[f"{media.taken_at.year:04d}", MONTHS[media.taken_at.month - 1]]]


def plan_links(rows: list[Media], by: Grouping, dest: Path, people: dict[int, list[str]]) -> Plan:
    """Where each link goes; same-named files from different folders get the media id added to the name."""
    plan = Plan()
    taken: set[Path] = set()
    for media in rows:
        groups = folders_for(media, by, people)
        if not groups:
            plan.skipped["no person"] = plan.skipped.get("no person", 0) + 1
            continue
        original = os.path.basename(media.path_bytes)
        for parts in groups:
            folder = dest.joinpath(*(folder_name(p) for p in parts))
            link = folder / folder_name(os.fsdecode(original))
            if link in taken:
                link = link.with_name(f"{link.stem}-{media.id}{link.suffix}")
            taken.add(link)
            plan.links.append((link, media.path_bytes))
    return plan


def organize(library: Library, by: Grouping, dest: str | Path, dry_run: bool = True,
             **filters: Any) -> dict[str, Any]:
    """Build (or, with dry_run, describe) DEST/<group>/<file> links to the originals of matching files."""
    if by not in ("year", "month", "place", "person"):
        raise ValueError("by must be one of year, month, place, person")
    spec = validate_filters(**filters)
    target = Path(os.path.abspath(os.path.expanduser(str(dest))))
    with session_for(library.database_url) as session:
        sources = [Path(s.path) for s in session.exec(select(Source)).all()]
        _refuse_inside_sources(target, sources + [library.root])
        rows = list(media_rows(session, spec))
        people = _people_of(session) if by == "person" else {}
    plan = plan_links(rows, by, target, people)
    created, existing, conflicts = 0, 0, []
    for link, original in plan.links:
        state = _link_state(link, original)
        if state == "exists":
            existing += 1
        elif state == "conflict":
            conflicts.append(str(link))
        elif not dry_run:
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(original, os.fsencode(link))
            created += 1
    folders: dict[str, int] = {}
    for link, _ in plan.links:
        key = str(link.parent.relative_to(target))
        folders[key] = folders.get(key, 0) + 1
    todo = len(plan.links) - existing - len(conflicts)
    return {
        "dest": str(target), "by": by, "dry_run": dry_run, "files": len(rows), "links": len(plan.links),
        "would_create" if dry_run else "created": todo if dry_run else created,
        "already_there": existing, "conflicts": conflicts, "skipped": plan.skipped,
        "folders": dict(sorted(folders.items())),
        "plan": [{"link": str(link), "target": os.fsdecode(original)} for link, original in plan.links[:REPORT_LINKS]],
    }


def _refuse_inside_sources(dest: Path, protected: list[Path]) -> None:
    real = Path(os.path.realpath(dest))
    for folder in protected:
        root = Path(os.path.realpath(folder))
        if real == root or root in real.parents:
            raise ValueError(f"refusing to write links inside {root}: choose a folder outside your sources "
                             "and the library")
    if real.exists() and not real.is_dir():
        raise ValueError(f"{real} exists and is not a folder")


def _link_state(link: Path, original: bytes) -> str:
    """'new', 'exists' (our link to this same file) or 'conflict' (anything else is there: left alone)."""
    encoded = os.fsencode(link)
    if not os.path.lexists(encoded):
        return "new"
    if os.path.islink(encoded) and os.readlink(encoded) == original:
        return "exists"
    return "conflict"


def _people_of(session: Any) -> dict[int, list[str]]:
    """media id -> folder names of the people in it (their name, else 'Person <id>')."""
    rows = session.exec(select(Face.media_id, Face.person_id, Person.name)
                        .join(Person, Person.id == Face.person_id).distinct()).all()  # type: ignore[arg-type]
    out: dict[int, list[str]] = {}
    for media_id, person_id, name in rows:
        label = name or f"Person {person_id}"
        if label not in out.setdefault(media_id, []):
            out[media_id].append(label)
    return out
