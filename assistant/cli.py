"""`photo-engine`: one CLI for ingest, status, info and watch (search, people and chat join it later).

Every subcommand takes `--library DIR` (default: $PHOTO_ENGINE_LIBRARY, else a per-user data dir); those
that report take `--json` and then print exactly one JSON document on stdout (progress goes to stderr).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from catalog.db import SchemaVersionError
from catalog.settings import Library
from ingest.queue import IngestBusy

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="VLM Photo Engine: a private, local assistant for your photo and video library.")
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

LibraryOpt = Annotated[Optional[Path], typer.Option("--library", "-l", help="Library folder (derived data).",
                                                    envvar="PHOTO_ENGINE_LIBRARY", show_envvar=True)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of a table.")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", "-w", help="Decode processes (default: all cores).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Files per catalog commit.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", help="Stop after this many files (for trials).")]


def _library(path: Optional[Path]) -> Library:
    return Library.at(path).ensure()


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


class _ProgressBar:
    """A rich progress bar fed by the pipeline's (done, failed, remaining) callback: files/s and ETA."""

    def __init__(self, enabled: bool) -> None:
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]:.1f} files/s"), TextColumn("failed {task.fields[failed]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=err, disable=not enabled)
        self.task = self.progress.add_task("extract", total=None, rate=0.0, failed=0)
        self.started: float | None = None

    def __enter__(self) -> "_ProgressBar":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def begin(self, phase: str) -> None:
        """A new phase ("extract": files, "analyze": analyzer tasks) counts from zero with its own rate."""
        unit = "files" if phase == "extract" else "tasks"
        self.progress.update(self.task, description=phase, completed=0, total=None, rate=0.0, failed=0)
        self.progress.columns[3].text_format = "{task.fields[rate]:.1f} " + unit + "/s"  # type: ignore[attr-defined]
        self.started = None

    def __call__(self, done: int, failed: int, remaining: int) -> None:
        import time

        now = time.monotonic()
        self.started = self.started or now
        handled = done + failed
        rate = handled / (now - self.started) if now > self.started else 0.0
        self.progress.update(self.task, completed=handled, total=handled + remaining, rate=rate, failed=failed)


@app.command()
def ingest(paths: Annotated[Optional[list[Path]], typer.Argument(help="Folders to add (none: rescan all sources).")] = None,
           library: LibraryOpt = None, json_out: JsonOpt = False, workers: WorkersOpt = None,
           batch_size: BatchOpt = 16, limit: LimitOpt = None,
           no_scan: Annotated[bool, typer.Option("--no-scan", help="Only work pending tasks.")] = False) -> None:
    """Add folders, scan them, and process everything pending. Safe to kill and rerun at any moment."""
    from ingest.runner import ingest as run_ingest

    lib = _library(library)
    for path in paths or []:
        if not path.is_dir():
            _fail(f"not a folder: {path}")
    try:
        with _ProgressBar(enabled=not json_out) as bar:
            report = run_ingest(lib, paths or [], rescan=not no_scan, workers=workers, batch_size=batch_size,
                                limit=limit, progress=bar, on_phase=bar.begin,
                                on_scan=None if json_out else lambda s: err.print(
                                    f"scanned {s.source}: {s.seen} files, {s.new} new, {s.changed} changed, "
                                    f"{s.moved} moved, {s.deleted} deleted, {s.failed} unrecognized"))
    except (IngestBusy, SchemaVersionError, NotADirectoryError) as error:
        _fail(str(error))
    if json_out:
        _print_json(report.as_dict())
        return
    run = report.run
    for name, reason in report.skipped_analyzers.items():
        err.print(f"[yellow]note[/] ({name}): {reason}")
    if report.reclaimed or report.given_up:
        err.print(f"resumed: {report.reclaimed} interrupted tasks retried, {report.given_up} given up")
    err.print(f"[bold green]done[/]: {run.done} processed, {run.failed} failed in {run.seconds:.1f} s "
              f"({run.files_per_second:.1f} files/s). `photo-engine status` lists failures.")


@app.command()
def status(library: LibraryOpt = None, json_out: JsonOpt = False) -> None:
    """Counts, pending work, failed files with reasons, and store health."""
    from tools.library import library_status

    try:
        data = library_status(_library(library))
    except SchemaVersionError as error:
        _fail(str(error))
    if json_out:
        _print_json(data)
        return
    table = Table(title=f"Library {data['library']}", show_header=False)
    table.add_row("photos", str(data["media"]["photo"]))
    table.add_row("videos", str(data["media"]["video"]))
    table.add_row("keyframes", str(data["frames"]))
    table.add_row("faces / people", f"{data['faces']} / {data['people']}")
    table.add_row("pending tasks", str(data["pending"]))
    table.add_row("failed files", str(len(data["failed"])))
    table.add_row("deleted files", str(data["deleted"]))
    out.print(table)
    health = data["health"]
    out.print(f"health: catalog {health['catalog']} (schema v{health['schema_version']}), "
              f"vectors {health.get('vectors', 'not checked')}, {data['pending']} pending")
    for failure in data["failed"]:
        out.print(f"[red]failed[/] {failure['path']} [{failure['stage']}]: {failure['error']}")


@app.command()
def info(path: Annotated[str, typer.Argument(help="A file path or a media id.")],
         library: LibraryOpt = None, json_out: JsonOpt = False) -> None:
    """What the catalog knows of one file."""
    from tools.library import media_info

    data = media_info(_library(library), path)
    if data is None:
        _fail(f"not in the library: {path}", code=2)
    if json_out:
        _print_json(data)
        return
    table = Table(show_header=False)
    for key, value in data.items():
        if key == "frames":
            value = ", ".join(f"{f['time']:.2f}s" for f in value) or "-"
        table.add_row(key, "-" if value in (None, [], {}) else str(value))
    out.print(table)


@app.command()
def watch(paths: Annotated[Optional[list[Path]], typer.Argument(help="Folders to watch (none: all sources).")] = None,
          library: LibraryOpt = None, workers: WorkersOpt = None,
          settle: Annotated[float, typer.Option(help="Seconds of quiet before processing a burst of changes.")] = 2.0) -> None:
    """Process new and changed files as they appear (Ctrl-C to stop)."""
    from ingest.watch import watch_sources

    lib = _library(library)
    try:
        watch_sources(lib, paths or [], workers=workers, settle=settle,
                      report=lambda r: err.print(f"processed {r.run.done}, failed {r.run.failed}"))
    except (IngestBusy, SchemaVersionError) as error:
        _fail(str(error))
    except KeyboardInterrupt:
        err.print("stopped watching")


@app.command()
def retry(library: LibraryOpt = None, stage: Annotated[Optional[str], typer.Option(help="Only this stage.")] = None) -> None:
    """Mark failed tasks pending again (run `ingest` afterwards)."""
    from catalog.db import session_for
    from ingest.queue import retry_failed

    with session_for(_library(library).database_url) as session:
        err.print(f"{retry_failed(session, stage)} failed tasks are pending again")


people_app = typer.Typer(help="People found by face clustering: list, name, merge.", invoke_without_command=True)
app.add_typer(people_app, name="people")


@people_app.callback()
def people_list(ctx: typer.Context, library: LibraryOpt = None, json_out: JsonOpt = False) -> None:
    """List people (most faces first) with the files they appear in."""
    if ctx.invoked_subcommand is not None:
        return
    from catalog.db import session_for
    from ingest.people import list_people

    with session_for(_library(library).database_url) as session:
        people = list_people(session)
    if json_out:
        _print_json({"people": people})
        return
    table = Table("person", "name", "faces", "files")
    for person in people:
        table.add_row(str(person["person_id"]), person["name"] or "-", str(person["faces"]), str(len(person["media"])))
    out.print(table)


@people_app.command("name")
def people_name(person_id: int, name: str, library: LibraryOpt = None) -> None:
    """Give a person a name; it survives re-clustering."""
    from catalog.db import session_for
    from ingest.people import name_person

    with session_for(_library(library).database_url) as session:
        try:
            name_person(session, person_id, name)
        except (KeyError, ValueError) as error:
            _fail(str(error).strip("'"), code=2)
    err.print(f"person {person_id} is now {name!r}")


@people_app.command("merge")
def people_merge(keep: int, other: int, library: LibraryOpt = None) -> None:
    """Merge person OTHER into person KEEP."""
    from catalog.db import session_for
    from ingest.people import merge_people

    with session_for(_library(library).database_url) as session:
        try:
            merge_people(session, keep, other)
        except KeyError as error:
            _fail(str(error).strip("'"), code=2)
    err.print(f"merged person {other} into {keep}")


models_app = typer.Typer(help="Model profiles from models.yaml: what each analyzer uses and whether it is here.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(json_out: JsonOpt = False,
                profile: Annotated[Optional[str], typer.Option(help="Profile to show (default: active).")] = None) -> None:
    """Each analyzer's model, where it comes from, whether it is present, and its license."""
    from tools.models import models_report

    data = models_report(profile)
    if json_out:
        _print_json(data)
        return
    table = Table("family", "model", "source", "present", "license", title=f"profile {data['profile']}")
    for row in data["models"]:
        table.add_row(row["family"], row["model"], row["source"], "yes" if row["present"] else f"no: {row['detail']}",
                      row["license"] or "-")
    out.print(table)


@models_app.command("fetch")
def models_fetch(profile: Annotated[str, typer.Option(help="Profile whose models to download.")] = "full",
                 json_out: JsonOpt = False) -> None:
    """Download a profile's models once from the model hub (progress bar, verified), then run offline."""
    from tools.fetch import FetchError, fetch_models

    try:
        results = fetch_models(profile, progress=not json_out)
    except FetchError as error:
        if json_out:
            _print_json({"ok": False, "error": str(error), "models": getattr(error, "results", [])})
        _fail(str(error))
    if json_out:
        _print_json({"ok": True, "models": results})
    else:
        for row in results:
            out.print(f"{row['family']}: {row['model']} {row['status']} ({row.get('path') or '-'})")


@models_app.command("check")
def models_check(json_out: JsonOpt = False,
                 profile: Annotated[Optional[str], typer.Option(help="Profile to check.")] = None) -> None:
    """Like `list`, but exits non-zero when a model of the profile is missing."""
    from tools.models import models_report

    data = models_report(profile)
    if json_out:
        _print_json(data)
    else:
        models_list(json_out=False, profile=profile)
    if not all(row["present"] for row in data["models"]):
        raise typer.Exit(1)

def _register_command_modules() -> None:
    """Commands that live in their own modules (search, chat, serve) add themselves to `app` on import."""
    import importlib

    for module in ("assistant.cli_search", "assistant.cli_chat", "assistant.cli_serve"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


sys.modules.setdefault("assistant.cli", sys.modules[__name__])  # `python -m assistant.cli` is the same module
_register_command_modules()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
