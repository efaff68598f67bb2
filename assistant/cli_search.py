"""`photo-engine search | similar | duplicates | organize | albums`: the search tools on the command line.

Registered on the main `app` when assistant.cli imports this module. `--json` prints exactly one document:
`{"results": [...]}` for search and similar, the tool's own dict for the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError
from rich.table import Table

from assistant.cli import JsonOpt, LibraryOpt, _fail, _library, _print_json, app, err, out

TypeOpt = Annotated[Optional[str], typer.Option("--type", help="photo or video.")]
YearOpt = Annotated[Optional[int], typer.Option("--year", help="Taken in this year.")]
MonthOpt = Annotated[Optional[int], typer.Option("--month", help="Taken in this month (1-12).")]
FromOpt = Annotated[Optional[str], typer.Option("--from", help="Taken on or after (ISO date).")]
ToOpt = Annotated[Optional[str], typer.Option("--to", help="Taken on or before (ISO date, inclusive).")]
PersonOpt = Annotated[Optional[str], typer.Option("--person", help="A person's name or id.")]
PlaceOpt = Annotated[Optional[str], typer.Option("--place", help="City, region or country.")]
CameraOpt = Annotated[Optional[str], typer.Option("--camera", help="Camera make or model.")]
LimitOpt = Annotated[int, typer.Option("--limit", "-k", help="How many results.")]
SortOpt = Annotated[str, typer.Option("--sort", help="relevance, newest or oldest.")]


def _problem(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in error.errors()[:5])
    return error.args[0] if error.args and isinstance(error.args[0], str) else str(error)


def _results_table(results: list[dict[str, Any]], title: str) -> None:
    table = Table("#", "score", "kind", "taken", "place", "file", "why", title=title)
    for rank, row in enumerate(results, 1):
        where = f" @{row['frame_time']:.1f}s" if row.get("frame_time") is not None else ""
        score = "-" if row["score"] is None else f"{row['score']:.3f}"
        table.add_row(str(rank), score, row["kind"], (row["taken_at"] or "-")[:10], row["place"] or "-",
                      f"{Path(row['path']).name}{where}", row["why"])
    out.print(table)


def _run_search(library: Optional[Path], json_out: bool, title: str, **arguments: Any) -> None:
    from tools.search import search

    try:
        outcome = search(_library(library), **arguments)
    except (ValidationError, ValueError, LookupError) as error:
        _fail(_problem(error), code=2)
    for warning in outcome.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    if json_out:
        _print_json({"results": outcome.results})
    elif outcome.results:
        _results_table(outcome.results, title)
    else:
        err.print("nothing matched")


def search(text: Annotated[Optional[str], typer.Argument(help="What to look for (none: filters alone, newest first).")] = None,
           image: Annotated[Optional[Path], typer.Option("--image", help="Find files like this image.")] = None,
           kind: TypeOpt = None, year: YearOpt = None, month: MonthOpt = None, date_from: FromOpt = None,
           date_to: ToOpt = None, person: PersonOpt = None, place: PlaceOpt = None, camera: CameraOpt = None,
           limit: LimitOpt = 20, sort: SortOpt = "relevance", library: LibraryOpt = None,
           json_out: JsonOpt = False) -> None:
    """Find photos and videos by what they show and/or by type, date, place, person and camera."""
    _run_search(library, json_out, f"search {text or ''}".strip(), text=text,
                image=str(image) if image else None, kind=kind, year=year, month=month, date_from=date_from,
                date_to=date_to, person=person, place=place, camera=camera, limit=limit, sort=sort)


def similar(path: Annotated[str, typer.Argument(help="A file (in the library or not) or a media id.")],
            kind: TypeOpt = None, year: YearOpt = None, limit: LimitOpt = 20, library: LibraryOpt = None,
            json_out: JsonOpt = False) -> None:
    """Files that look like this one (itself excluded), most alike first."""
    _run_search(library, json_out, f"like {path}", image=path, kind=kind, year=year, limit=limit)


def duplicates(max_hamming: Annotated[int, typer.Option(help="Perceptual-hash bits that may differ.")] = 8,
               min_cosine: Annotated[float, typer.Option(help="Embedding cosine for a look-alike.")] = 0.95,
               library: LibraryOpt = None, json_out: JsonOpt = False) -> None:
    """Groups of duplicate and near-duplicate files (largest file of each group first)."""
    from tools.duplicates import find_duplicates

    try:
        groups = find_duplicates(_library(library), max_hamming=max_hamming, min_cosine=min_cosine)
    except ValueError as error:
        _fail(_problem(error), code=2)
    if json_out:
        _print_json({"groups": groups})
        return
    if not groups:
        err.print("no duplicates found")
    for number, group in enumerate(groups, 1):
        out.print(f"[bold]group {number}[/] ({len(group['media'])} files)")
        for item in group["media"]:
            size = f"{item['width']}x{item['height']}" if item["width"] else "?"
            out.print(f"  {item['media_id']:>6}  {size:>11}  {item['path']}")


def organize(dest: Annotated[Path, typer.Argument(help="Folder to build the tree of links in.")],
             by: Annotated[str, typer.Option("--by", help="year, month, place or person.")] = "year",
             apply: Annotated[bool, typer.Option("--apply", help="Create the links (default: dry run).")] = False,
             kind: TypeOpt = None, year: YearOpt = None, person: PersonOpt = None, place: PlaceOpt = None,
             library: LibraryOpt = None, json_out: JsonOpt = False) -> None:
    """Build a browsable tree of symlinks to your originals (never moves or changes them). Dry run first."""
    from tools.organize import organize as run_organize

    try:
        report = run_organize(_library(library), by, dest, dry_run=not apply,  # type: ignore[arg-type]
                              kind=kind, year=year, person=person, place=place)
    except (ValidationError, ValueError) as error:
        _fail(_problem(error), code=2)
    if json_out:
        _print_json(report)
        return
    table = Table("folder", "files", title=f"{'dry run: ' if report['dry_run'] else ''}{report['dest']} by {by}")
    for folder, count in report["folders"].items():
        table.add_row(folder, str(count))
    out.print(table)
    verb = "would create" if report["dry_run"] else "created"
    out.print(f"{report['files']} files, {report['links']} links: {verb} "
              f"{report.get('would_create', report.get('created'))}, {report['already_there']} already there, "
              f"{len(report['conflicts'])} conflicts (left alone)")
    for reason, count in report["skipped"].items():
        out.print(f"skipped {count} files: {reason}")
    if report["dry_run"]:
        err.print("nothing was written; add --apply to create the links")


albums_app = typer.Typer(help="Smart albums: saved searches, re-run on demand.", invoke_without_command=True)


@albums_app.callback()
def albums_list(ctx: typer.Context, library: LibraryOpt = None, json_out: JsonOpt = False) -> None:
    """List saved albums."""
    if ctx.invoked_subcommand is not None:
        return
    from tools.albums import list_albums

    albums = list_albums(_library(library))
    if json_out:
        _print_json({"albums": albums})
        return
    table = Table("album", "search")
    for album in albums:
        table.add_row(album["name"], ", ".join(f"{k}={v}" for k, v in album["query"].items()))
    out.print(table)


@albums_app.command("save")
def albums_save(name: str, text: Annotated[Optional[str], typer.Argument(help="What to look for.")] = None,
                kind: TypeOpt = None, year: YearOpt = None, month: MonthOpt = None, date_from: FromOpt = None,
                date_to: ToOpt = None, person: PersonOpt = None, place: PlaceOpt = None,
                camera: CameraOpt = None,
                replace: Annotated[bool, typer.Option("--replace", help="Overwrite an album of that name.")] = False,
                library: LibraryOpt = None, json_out: JsonOpt = False) -> None:
    """Save a search as a smart album."""
    from tools.albums import save_album

    try:
        album = save_album(_library(library), name, replace=replace, text=text, kind=kind, year=year, month=month,
                           date_from=date_from, date_to=date_to, person=person, place=place, camera=camera)
    except (ValidationError, ValueError) as error:
        _fail(_problem(error), code=2)
    if json_out:
        _print_json(album)
    else:
        err.print(f"saved album {album['name']!r}")


@albums_app.command("show")
def albums_show(name: str, limit: LimitOpt = 100, library: LibraryOpt = None, json_out: JsonOpt = False) -> None:
    """The files of a smart album now."""
    from tools.albums import album_media

    try:
        results = album_media(_library(library), name, limit=limit)
    except (KeyError, ValueError) as error:
        _fail(_problem(error), code=2)
    if json_out:
        _print_json({"results": results})
    else:
        _results_table(results, f"album {name}")


@albums_app.command("delete")
def albums_delete(name: str, library: LibraryOpt = None) -> None:
    """Delete a smart album (never any file)."""
    from tools.albums import delete_album

    if not delete_album(_library(library), name):
        _fail(f"no album named {name!r}", code=2)
    err.print(f"deleted album {name!r}")


def register(target: typer.Typer) -> None:
    """Add these commands to a CLI app."""
    for command in (search, similar, duplicates, organize):
        target.command()(command)
    target.add_typer(albums_app, name="albums")


def _apps() -> list[typer.Typer]:
    """`app`, and under `python -m assistant.cli` also the app of `__main__` (a second copy of that module)."""
    import sys

    apps = [app]
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "assistant.cli" and getattr(main, "app", app) is not app:
        apps.append(main.app)  # type: ignore[union-attr]
    return apps


for _target in _apps():
    register(_target)
