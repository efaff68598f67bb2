"""`photo-engine ask "show beach videos from 2019"`: one question to the assistant, from the shell.

With `--json` it prints exactly `{"answer", "media": [{media_id, path, kind}], "tool_calls": [{name, args}]}`;
otherwise the tool calls (stderr), the checked answer and a table of the media it cites.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from assistant.cli import JsonOpt, LibraryOpt, _fail, _library, _print_json, app, err, out
from catalog.db import SchemaVersionError


@app.command()
def ask(question: Annotated[str, typer.Argument(help="A question about your photos and videos.")],
        library: LibraryOpt = None, json_out: JsonOpt = False,
        image: Annotated[Optional[str], typer.Option("--image", help="A file or media id for 'photos like this'.")] = None,
        no_llm: Annotated[bool, typer.Option("--no-llm", help="Answer from the tool results only (fast).")] = False) -> None:
    """Ask the assistant; it searches, counts and lists people with the library's tools and cites the files."""
    from assistant.agent import Agent

    if not question.strip():
        _fail("ask what? e.g. photo-engine ask \"show beach videos from 2019\"")
    agent = Agent(_library(library), llm=False if no_llm else None)
    try:
        if json_out:
            result = agent.ask(question, image=image)
            _print_json({"answer": result["answer"], "media": [_media_row(m) for m in result["media"]],
                         "tool_calls": result["tool_calls"]})
            return
        result = _stream(agent, question, image)
    except SchemaVersionError as error:
        _fail(str(error))
    if result["media"]:
        table = Table("#", "id", "kind", "file", "at")
        for i, item in enumerate(result["media"], 1):
            at = f"{item['frame_time']:.1f}s" if item.get("frame_time") is not None else ""
            table.add_row(str(i), str(item["media_id"]), item["kind"] or "", item["path"] or "", at)
        out.print(table)


def _media_row(item: dict) -> dict:
    """A media item as `ask --json` prints it (frame_time only for videos that have one)."""
    row = {"media_id": item["media_id"], "path": item["path"], "kind": item["kind"]}
    if item.get("frame_time") is not None:
        row["frame_time"] = item["frame_time"]
    return row


def _stream(agent, question: str, image: Optional[str]) -> dict:  # type: ignore[no-untyped-def]
    """Print tool calls to stderr and the final answer to stdout; returns the agent's result."""
    result: dict = {}
    for event in agent.stream(question, image=image):
        if event["type"] == "tool":
            err.print(f"[dim]tool {event['name']}({_args(event['args'])}){'' if event['ok'] else ' failed'}[/]")
        elif event["type"] == "final":
            result = event["result"]
    out.print(result.get("answer", ""), markup=False, highlight=False)
    return result


def _args(args: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())
