"""The assistant's loop: understand → call tools → (LLM picks more tools) → grounded answer with its media.

Simple questions (search, count, people, timeline, places, one video) are answered by calling the tools
directly from the rule-based understanding: they never wait on the LLM's tool choice, which is both the
slowest and the least reliable step of a small model. The LLM then writes the answer from the results, and
only for questions the rules do not recognise does it choose tools itself (schema-constrained, step limit).

Grounding. The LLM sees tool results as a quoted JSON data block in which every file is a reference ([1],
[2]...), never its path or file name: library text is data, and a file named "ignore previous
instructions" is only ever shown to the user, in quotes, where the answer cites it. An
answer that uses a number the data does not contain, cites a reference that does not exist, claims nothing
matched when something did (or the reverse), or misses the count it was asked for is replaced by a plain
answer written from the same results. The result always lists the media it shows and the tool calls made.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from assistant.understand import Understanding, is_greeting, understand
from catalog.settings import Library

log = logging.getLogger(__name__)

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
MAX_MEDIA = 20  # media attached to one answer
MAX_LLM_STEPS = 3  # tool calls the LLM may add to the direct ones
SEARCH_LIMIT = 20
DATA_ITEMS = 10  # results per tool shown to the LLM (4k context; prompt evaluation is the slow part on a CPU)
TEXT_CAP = 120  # characters of any library string shown to the LLM

_NEGATIVE = re.compile(r"\b(nothing|none|no (photos?|videos?|files?|results?|matches|media|pictures?|people|one)|"
                       r"(could ?n[o']t|can ?n[o']t|cannot|did ?n[o']t|do ?n[o']t|unable to) (find|see|locate)|"
                       r"not (find|found|any)|zero)\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w\[])\d+(?:[.,:]\d+)*(?![\w\]])")
_REF = re.compile(r"\[(\d{1,3})\]")
_ECHO = re.compile(r"<\s*/?\s*data\s*>|\bthe user asked\b|\{\s*\"(tool|ref|args)\"|\bin short:|https?://|"
                   r"(\b\w+\b)(?:\W+\2\b){4}", re.IGNORECASE)  # echoes, links, a word repeated 5 times
_SPECIAL = re.compile(r"<\|[^|>]*\|>|</?(data|s)>")


@dataclass
class Step:
    """One tool call and its envelope ({ok, result, warnings} or {ok: false, error})."""

    name: str
    args: dict[str, Any]
    envelope: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.envelope.get("ok"))

    @property
    def result(self) -> Any:
        return self.envelope.get("result")


# --- prompts ---------------------------------------------------------------------------------------------

@lru_cache(maxsize=8)
def load_prompt(name: str) -> str:
    """A prompt file from prompts/, read at run time so it can be edited without touching code."""
    return (PROMPTS / name).read_text(encoding="utf-8")


def tool_descriptions() -> dict[str, str]:
    """The tools offered to the LLM and the descriptions it sees (prompts/tools.yaml)."""
    return dict(yaml.safe_load(load_prompt("tools.yaml")) or {})


# --- catalog vocabulary ---------------------------------------------------------------------------------------

def catalog_names(library: Library) -> tuple[list[str], list[str]]:
    """Named people and place names (city, region, country) the question may mention."""
    from sqlmodel import select

    from catalog.db import session_for
    from catalog.models import Media, Person

    with session_for(library.database_url) as session:
        people = [n for n in session.exec(select(Person.name).where(Person.name.is_not(None)).distinct()).all() if n]  # type: ignore[union-attr]
        places: set[str] = set()
        for column in (Media.city, Media.region, Media.country):
            places.update(v for v in session.exec(select(column).where(column.is_not(None)).distinct()).all() if v)  # type: ignore[union-attr]
    return sorted(people), sorted(places)


def resolve_media_ref(library: Library, ref: str | int | None) -> int | None:
    """A media id from an id, a path, or a bare file name the question mentions."""
    if ref is None:
        return None
    from sqlmodel import select

    from catalog.db import session_for
    from catalog.models import Media
    from tools.library import find_media

    with session_for(library.database_url) as session:
        media = find_media(session, str(ref))
        if media is None and not str(ref).isdigit() and "/" not in str(ref) and "\\" not in str(ref):
            media = session.exec(select(Media).where(Media.state == "active", Media.path.endswith(  # type: ignore[attr-defined]
                "/" + Path(str(ref)).name, autoescape=True))).first()
        return media.id if media is not None and media.state == "active" else None


# --- direct tool plans (pure) ----------------------------------------------------------------------------------

def search_args(u: Understanding, limit: int = SEARCH_LIMIT) -> dict[str, Any]:
    """search_media arguments for an understanding (filters + semantic text)."""
    args = {k: v for k, v in u.filters.items() if k != "image"}
    if u.semantic_text:
        args["text"] = u.semantic_text
    args["limit"] = limit
    return args


def filter_args(u: Understanding) -> dict[str, Any]:
    return {k: v for k, v in u.filters.items() if k != "image"}


def direct_plan(u: Understanding) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls a recognised question needs, decided without the LLM (follow-ups come later)."""
    if u.intent == "search" and not u.similar:
        return [("search_media", search_args(u))]
    if u.intent == "count":
        if u.semantic_text:  # "how many cat photos": counting needs a content search
            return [("search_media", search_args(u, limit=50))]
        return [("count_media", filter_args(u)), ("search_media", search_args(u))]
    if u.intent == "people":
        if u.filters.get("person"):
            return [("people_with", {"person": u.filters["person"]})]
        return [("list_people", {"limit": 10})]
    if u.intent == "timeline":
        return [("timeline", {"by": u.group_by or "month", **filter_args(u)})]
    if u.intent == "places":
        return [("places", {"limit": 20, **filter_args(u)})]
    return []


# --- what the LLM sees ------------------------------------------------------------------------------------------

class Refs:
    """Numbered references for the media an answer may cite: [1], [2]... in the order first seen."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._index: dict[int, int] = {}

    def add(self, item: dict[str, Any]) -> str:
        media_id = int(item["media_id"])
        if media_id not in self._index:
            entry = {"media_id": media_id, "path": item.get("path"), "kind": item.get("kind")}
            if item.get("frame_time") is not None:
                entry["frame_time"] = item["frame_time"]
            self.items.append(entry)
            self._index[media_id] = len(self.items)
        return f"[{self._index[media_id]}]"

    def media(self, limit: int = MAX_MEDIA) -> list[dict[str, Any]]:
        return self.items[:limit]


def _cap(value: Any) -> Any:
    """Library strings shortened before the LLM sees them (JSON-quoted by the caller)."""
    if isinstance(value, str):
        return value[:TEXT_CAP]
    return value


def _day(value: str | None) -> str | None:
    return value[:10] if value else None


def _media_view(item: dict[str, Any], refs: Refs) -> dict[str, Any]:
    """A search result as the LLM sees it: reference, id, kind, day, place, reason. No path, no file name."""
    view = {"ref": refs.add(item), "media_id": item.get("media_id"), "kind": item.get("kind"),
            "taken": _day(item.get("taken_at")), "place": _cap(item.get("place"))}
    if item.get("why") and item["why"] != "matches the filters":
        view["why"] = _cap(item["why"])
    if item.get("frame_time") is not None:
        view["at_seconds"] = item["frame_time"]
    return {k: v for k, v in view.items() if v is not None}


def step_view(step: Step, refs: Refs) -> dict[str, Any]:
    """One tool call and a compact, path-free view of its result."""
    view: dict[str, Any] = {"tool": step.name, "args": step.args, "ok": step.ok}
    if not step.ok:
        view["error"] = _cap(step.envelope.get("error"))
        return view
    result = step.result
    if step.name in ("search_media", "find_similar", "media_with"):
        items = result or []
        view["matched"] = len(items)
        view["results"] = [_media_view(i, refs) for i in items[:DATA_ITEMS]]
    elif step.name == "list_people":
        view["people"] = [{"person": p.get("name") or f"Person {p['person_id']}", "person_id": p["person_id"],
                           "faces": p.get("faces"), "files": p.get("files")} for p in (result or [])[:DATA_ITEMS]]
    elif step.name == "summarize_video":
        view["video"] = refs.add({"media_id": result["media_id"], "path": result.get("path"), "kind": "video"})
        view["duration_seconds"] = round(result["duration"], 1) if result.get("duration") else None
        view["scenes"] = [{"from": s["start"], "to": s["end"], "seen": [_cap(t) for t in s["tags"]],
                           "people": [_cap(p) for p in s["people"]], "captions": [_cap(c) for c in s["captions"][:1]]}
                          for s in result.get("scenes", [])[:DATA_ITEMS]]
    elif step.name == "media_info":
        refs_id = refs.add(result)
        view["file"] = {"ref": refs_id, "kind": result.get("kind"), "taken": _day(result.get("taken_at")),
                        "place": _cap(result.get("place")), "camera": _cap(result.get("camera")),
                        "tags": [_cap(t["label"]) for t in result.get("tags", [])[:5]],
                        "people": sorted({f["person_id"] for f in result.get("faces", []) if f.get("person_id")})}
    elif step.name == "timeline":
        view["periods"] = (result or {}).get("periods", [])[-DATA_ITEMS:]
        view["undated"] = (result or {}).get("undated", 0)
    elif step.name == "places":
        view["places"] = [{"place": _cap(p["place"]), "count": p["count"]} for p in (result or {}).get("places", [])[:DATA_ITEMS]]
    else:
        view["result"] = result
    if step.envelope.get("warnings"):
        view["warnings"] = [_cap(w) for w in step.envelope["warnings"]]
    return view


def collect_media(steps: Sequence[Step], refs: Refs) -> None:
    """Every file the results show gets a reference (after those the LLM saw), for the answer's gallery."""
    for step in steps:
        if not step.ok:
            continue
        if step.name in ("search_media", "find_similar", "media_with"):
            for item in step.result or []:
                refs.add(item)
        elif step.name == "media_info":
            refs.add(step.result)


def data_block(steps: Sequence[Step], refs: Refs) -> str:
    """All tool results as one JSON document: quoted data, never instructions."""
    return json.dumps([step_view(s, refs) for s in steps], ensure_ascii=False, default=str)


# --- plain answers from results (pure) --------------------------------------------------------------------------

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


def describe_filters(filters: dict[str, Any], text: str | None = None) -> str:
    """' matching "beach" from 2019 in Paris with Ann' for the filters of a question."""
    parts = []
    if text:
        parts.append(f'matching "{text}"')
    year, month = filters.get("year"), filters.get("month")
    if month and year:
        parts.append(f"from {_MONTHS[month - 1]} {year}")
    elif year:
        parts.append(f"from {year}")
    elif month:
        parts.append(f"from {_MONTHS[month - 1]}")
    if filters.get("date_from") and filters.get("date_to"):
        parts.append(f"between {filters['date_from']} and {filters['date_to']}")
    elif filters.get("date_from"):
        parts.append(f"since {filters['date_from']}")
    elif filters.get("date_to"):
        parts.append(f"until {filters['date_to']}")
    if filters.get("place"):
        parts.append(f"in {filters['place']}")
    if filters.get("person"):
        parts.append(f"with {filters['person']}")
    if filters.get("camera"):
        parts.append(f"taken with {filters['camera']}")
    return (" " + " ".join(parts)) if parts else ""


def _things(kind: str | None, n: int) -> str:
    word = {"photo": "photo", "video": "video"}.get(kind or "", "file")
    return word if n == 1 else word + "s"


def _cite(refs: Sequence[str], more: int) -> str:
    shown = ", ".join(refs)
    return f"{shown} and {more} more" if more > 0 else shown


def plain_answer(u: Understanding, steps: Sequence[Step], refs: Refs) -> str:
    """The answer written from the results without the LLM: always correct, if plain."""
    failed = [s for s in steps if not s.ok]
    by_name = {s.name: s for s in steps if s.ok}
    if not steps:
        if u.similar:
            return "Attach a photo or pick a result first, and I will find files that look like it."
        if u.intent == "summarize_video":
            return "Which video? Give its file name or id (for example 'summarize video 12')."
        return ("I can find photos and videos by what they show, date, place and person, count them, list the "
                "people and places in your library, and summarize a video. Try \"show beach videos from 2019\".")
    if failed and not by_name:
        return f"I could not get an answer from the library: {failed[0].envelope.get('error')}."
    if "count_media" in by_name and u.intent == "count":
        counts = by_name["count_media"].result
        kind = u.filters.get("kind")
        total = counts["total"]
        text = f"You have {total} {_things(kind, total)}{describe_filters(u.filters)}."
        if not kind and total:
            text = text[:-1] + f" ({counts['photo']} {_things('photo', counts['photo'])} and {counts['video']} " \
                               f"{_things('video', counts['video'])})."
        shown = [refs.add(i) for i in (by_name.get("search_media").result if "search_media" in by_name else [])][:5]
        return text + (f" They include {_cite(shown, total - len(shown))}." if shown and total else "")
    if "summarize_video" in by_name:
        result = by_name["summarize_video"].result
        ref = refs.add({"media_id": result["media_id"], "path": result.get("path"), "kind": "video"})
        return f"In {ref}: " + "; ".join(result.get("summary", "").splitlines()[:6]) + "."
    for name in ("search_media", "find_similar", "media_with"):
        if name in by_name:
            items = by_name[name].result or []
            kind = u.filters.get("kind")
            what = describe_filters(u.filters, u.semantic_text or None)
            warnings = by_name[name].envelope.get("warnings") or []
            hint = f" ({warnings[0]})" if warnings and warnings != ["nothing matched"] else ""
            if not items:
                if u.intent == "chat":  # the LLM's own guess at a search found nothing: say what works
                    return "I found nothing for that. " + plain_answer(u, [], refs)
                return f"I found no {_things(kind, 2)}{what}{hint}."
            shown = [refs.add(i) for i in items[:5]]
            if u.intent == "count":
                return f"I found {len(items)} {_things(kind, len(items))}{what}: {_cite(shown, len(items) - len(shown))}."
            lead = "Here is the" if len(items) == 1 else f"Here are {len(items)}"
            if u.similar:
                what = " that look" + ("s" if len(items) == 1 else "") + " like it" + what
            return f"{lead} {_things(kind, len(items))}{what}: {_cite(shown, len(items) - len(shown))}."
    if "list_people" in by_name:
        people = by_name["list_people"].result or []
        if not people:
            return ("No people have been recognised in your library yet (no faces were found or face analysis "
                    "has not run), so I cannot tell who appears most often.")
        top = people[0]
        name = top.get("name") or f"Person {top['person_id']}"
        rest = ", ".join(p.get("name") or f"Person {p['person_id']}" for p in people[1:4])
        cited = [refs.add(i) for i in (by_name["media_with"].result or [])[:5]] if "media_with" in by_name else []
        text = f"{name} appears most often ({top.get('faces')} faces in {top.get('files')} files)"
        text += f", for example in {', '.join(cited)}" if cited else ""
        return text + (f"; then {rest}." if rest else ".")
    if "people_with" in by_name:
        rows = by_name["people_with"].result or []
        if not rows:
            return f"Nobody else appears together with {u.filters.get('person')} in your library."
        return "Most often together: " + ", ".join(
            f"{r.get('name') or 'Person ' + str(r['person_id'])} ({r['shared_media']} files)" for r in rows[:5]) + "."
    if "timeline" in by_name:
        periods = by_name["timeline"].result.get("periods", [])
        if not periods:
            return f"There are no dated files{describe_filters(u.filters)}."
        label = (lambda p: f"{_MONTHS[p['month'] - 1]} {p['year']}" if "month" in p else str(p["year"]))
        top = sorted(periods, key=lambda p: -p["count"])[:5]
        return "Most files: " + ", ".join(f"{label(p)} ({p['count']})" for p in top) + "."
    if "places" in by_name:
        rows = by_name["places"].result.get("places", [])
        if not rows:
            return f"None of the files{describe_filters(u.filters)} has a known place."
        return "Most files were taken in " + ", ".join(f"{r['place']} ({r['count']})" for r in rows[:5]) + "."
    if "media_info" in by_name:
        info = by_name["media_info"].result
        ref = refs.add(info)
        return f"{ref} is a {info.get('kind')} taken {_day(info.get('taken_at')) or 'on an unknown date'}" + (
            f" in {info['place']}" if info.get("place") else "") + "."
    return "Here is what the library returned."


# --- checking an LLM answer (pure) -----------------------------------------------------------------------------

def expected_facts(u: Understanding, steps: Sequence[Step]) -> dict[str, Any]:
    """What a correct answer must reflect: the count asked for, and whether anything matched at all."""
    facts: dict[str, Any] = {"count": None, "matched": None}
    for step in steps:
        if not step.ok:
            continue
        if step.name == "count_media" and u.intent == "count":
            facts["count"] = step.result["total"]
            facts["matched"] = step.result["total"] > 0
        elif step.name in ("search_media", "find_similar", "media_with") and facts["matched"] is None:
            facts["matched"] = bool(step.result)
            if u.intent == "count":
                facts["count"] = len(step.result or [])
        elif step.name == "list_people" and facts["matched"] is None:
            facts["matched"] = bool(step.result)
    return facts


def _allowed_numbers(data: str, question: str) -> set[str]:
    allowed = set(_NUMBER.findall(data)) | set(_NUMBER.findall(question))
    return allowed | {a.split(".")[0] for a in allowed} | {part for a in allowed for part in re.split(r"[-:T.,]", a)}


def _invented_numbers(answer: str, allowed: set[str], n_refs: int) -> list[str]:
    refs = {str(i) for i in range(1, n_refs + 1)}
    return [n for n in _NUMBER.findall(answer) if n not in allowed and n not in refs]


def early_problems(partial: str, data: str, question: str, n_refs: int = 0) -> list[str]:
    """Problems visible before an answer is finished: echoed prompt or data, numbers the data lacks."""
    if _ECHO.search(partial):
        return ["the answer echoes the prompt or the data"]
    complete = partial[: len(partial.rstrip("0123456789.,:"))]  # a number still being written may grow
    invented = _invented_numbers(complete, _allowed_numbers(data, question), n_refs)
    return [f"numbers not in the data: {invented[:3]}"] if invented else []


def answer_problems(answer: str, data: str, question: str, facts: dict[str, Any], n_refs: int,
                    must_cite: bool = False) -> list[str]:
    """Why an LLM answer cannot be shown as is (empty when it is grounded in the data)."""
    problems = []
    if not answer.strip():
        return ["empty answer"]
    if _ECHO.search(answer):
        problems.append("the answer echoes the prompt or the data")
    invented = _invented_numbers(answer, _allowed_numbers(data, question), n_refs)
    if invented:
        problems.append(f"numbers not in the data: {invented[:3]}")
    if must_cite and not _REF.search(answer):
        problems.append("the answer cites none of the files it shows")
    bad_refs = [r for r in _REF.findall(answer) if not 1 <= int(r) <= n_refs]
    if bad_refs:
        problems.append(f"references that do not exist: {bad_refs[:3]}")
    negative = bool(_NEGATIVE.search(answer))
    if facts.get("matched") is False and not negative and facts.get("count") != 0:
        problems.append("nothing matched but the answer does not say so")
    if facts.get("matched") is True and negative:
        problems.append("results exist but the answer says nothing matched")
    if facts.get("count") is not None and facts["count"] > 0 and str(facts["count"]) not in _NUMBER.findall(answer):
        problems.append(f"the answer does not give the count {facts['count']}")
    if facts.get("count") == 0 and not (negative or re.search(r"\b(0|no|zero)\b", answer, re.IGNORECASE)):
        problems.append("the count is zero but the answer does not say so")
    return problems


def cite_names(answer: str, media: Sequence[dict[str, Any]]) -> str:
    """References [n] replaced by the quoted file name the user can recognise."""
    def name(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if 1 <= index <= len(media) and media[index - 1].get("path"):
            return f"\u201c{Path(media[index - 1]['path']).name}\u201d"
        return match.group(0)
    return _REF.sub(name, answer)


def clean_llm_text(text: str) -> str:
    """Special tokens and stray data tags removed; whitespace tidied."""
    return re.sub(r"\s+", " ", _SPECIAL.sub("", text)).strip()


# --- the agent ---------------------------------------------------------------------------------------------------

class Agent:
    """Answers questions about one library. `llm`: a chat model, None to load models.yaml's, False for none.

    The LLM chooses tools itself for questions the rules do not recognise, and after the direct calls too
    when `follow_up` is set (worth it with a model stronger than SmolLM2-135M).
    """

    def __init__(self, library: Library, llm: Any = None, today: date | None = None,
                 max_llm_steps: int = MAX_LLM_STEPS, tools: Sequence[Any] | None = None,
                 follow_up: bool = False, llm_answers: bool | None = None) -> None:
        self.library = library
        self.llm_answers = llm_answers  # None: models.yaml's llm `write_answers` (default true)
        self.follow_up = follow_up  # let the LLM add tool calls after the direct ones (for stronger models)
        self._llm = llm
        self.today = today
        self.max_llm_steps = max_llm_steps
        self._tools = {t.name: t for t in tools} if tools is not None else None

    # -- parts --

    @property
    def tools(self) -> dict[str, Any]:
        if self._tools is None:
            from tools.lc_tools import build_tools

            self._tools = {t.name: t for t in build_tools(self.library)}
        return self._tools

    def llm_tools(self) -> list[Any]:
        """The tools the LLM may call, with the descriptions from prompts/tools.yaml."""
        offered = []
        for name, description in tool_descriptions().items():
            tool = self.tools.get(name)
            if tool is not None:
                offered.append(tool.model_copy(update={"description": " ".join(str(description).split())}))
        return offered

    @property
    def llm(self) -> Any | None:
        """The chat model, loaded on first use; None (plain answers) when llama.cpp or the GGUF is missing."""
        if self._llm is None:
            try:
                from assistant.llm import LlamaChatModel

                self._llm = LlamaChatModel.from_config()
            except (ImportError, FileNotFoundError, ValueError) as error:
                log.warning("no LLM, answering from tool results only: %s", error)
                self._llm = False
        return self._llm or None

    def call(self, name: str, args: dict[str, Any]) -> Step:
        """Run one tool (validated by its schema); unknown tools and crashes become error envelopes."""
        tool = self.tools.get(name)
        if tool is None:
            return Step(name, args, {"ok": False, "error": f"no tool named {name!r}", "warnings": []})
        try:
            envelope = tool.invoke(args)
        except Exception as error:  # noqa: BLE001 - one broken tool must not end the conversation
            log.exception("tool %s failed", name)
            envelope = {"ok": False, "error": f"{type(error).__name__}: {error}", "warnings": []}
        if not isinstance(envelope, dict) or "ok" not in envelope:
            envelope = {"ok": True, "result": envelope, "warnings": []}
        return Step(name, args, envelope)

    def _follow_ups(self, u: Understanding, steps: list[Step]) -> list[tuple[str, dict[str, Any]]]:
        """Direct calls that depend on earlier results (the top person's files)."""
        last = steps[-1]
        if last.name == "list_people" and last.ok and last.result and u.most:
            return [("media_with", {"person": str(last.result[0]["person_id"]), "limit": 10})]
        return []

    def _direct(self, u: Understanding, image: str | None) -> Iterator[Step]:
        if u.intent == "summarize_video":
            media_id = resolve_media_ref(self.library, u.media_ref)
            if media_id is None and u.media_ref is None and (u.filters or u.semantic_text):
                # "what happens in the video from 2014": the best matching video
                found = self.call("search_media", {**search_args(u, limit=5), "kind": "video"})
                yield found
                media_id = found.result[0]["media_id"] if found.ok and found.result else None
            if media_id is not None:
                yield self.call("summarize_video", {"media_id": media_id})
            elif u.media_ref is not None:
                yield Step("summarize_video", {"media": u.media_ref},
                           {"ok": False, "error": f"no video {u.media_ref!r} in the library", "warnings": []})
            return
        if u.similar:
            media_id = resolve_media_ref(self.library, image) if image else None
            if media_id is not None:
                yield self.call("find_similar", {"media_id": media_id, "limit": SEARCH_LIMIT, **filter_args(u)})
            elif image:  # a file from outside the library (an upload): the search function takes a path
                yield self._similar_to_file(image, filter_args(u))
            return
        steps: list[Step] = []
        for name, args in direct_plan(u):
            steps.append(self.call(name, args))
            yield steps[-1]
        for name, args in self._follow_ups(u, steps) if steps else []:
            yield self.call(name, args)

    def _similar_to_file(self, image: str, filters: dict[str, Any]) -> Step:
        """Look-alikes of an image file that is not in the library (not an LLM tool: it takes a path)."""
        from tools.lc_tools import envelope
        from tools.search import search

        args = {"image": image, "limit": SEARCH_LIMIT, **filters}

        def body() -> Any:
            outcome = search(self.library, **args)
            return outcome.results, outcome.warnings
        return Step("search_media", args, envelope(body))

    def _messages(self, question: str, steps: Sequence[Step], refs: Refs) -> list[BaseMessage]:
        """System prompt, the question, then each tool call and its data block."""
        today = (self.today or date.today()).isoformat()
        messages: list[BaseMessage] = [SystemMessage(load_prompt("system.txt").replace("{today}", today)),
                                       HumanMessage(question)]
        for i, step in enumerate(steps):
            call_id = f"call_{i}"
            messages.append(AIMessage(content="", tool_calls=[{"name": step.name, "args": step.args, "id": call_id}]))
            messages.append(ToolMessage(content=f"<data>{json.dumps(step_view(step, refs), ensure_ascii=False, default=str)}</data>",
                                        tool_call_id=call_id, name=step.name))
        return messages

    def _llm_steps(self, question: str, steps: list[Step], refs: Refs) -> Iterator[Step]:
        """Questions the rules did not recognise: the LLM picks tools (constrained, validated), step limit."""
        llm = self.llm
        if llm is None:
            return
        bound = llm.bind_tools(self.llm_tools())
        seen: set[str] = set()
        for _ in range(self.max_llm_steps):
            message = bound.invoke(self._messages(question, steps, refs))
            if not message.tool_calls:
                return  # the model chose to answer
            call = message.tool_calls[0]
            key = json.dumps([call["name"], call["args"]], sort_keys=True, default=str)
            if key in seen:
                return  # a small model repeats itself; the results are already here
            seen.add(key)
            steps.append(self.call(call["name"], call["args"]))
            yield steps[-1]

    def writes_answers(self) -> bool:
        """Whether the LLM writes answers; a model too small to pass the grounding check can be told not to
        (`write_answers: false` under `llm` in models.yaml) and the plain answer comes without the wait."""
        if self.llm_answers is None:
            from catalog.model_config import model_spec

            self.llm_answers = bool((model_spec("llm") or {}).get("write_answers", True))
        return self.llm_answers

    def _llm_answer(self, question: str, data: str, summary: str) -> Iterator[str]:
        """The LLM's answer, streamed: rules and the data block in the system turn, the question as the user's."""
        llm = self.llm if self.writes_answers() else None
        if llm is None:
            return
        today = (self.today or date.today()).isoformat()
        system = load_prompt("system.txt").replace("{today}", today)
        context = load_prompt("answer.txt").replace("{data}", data).replace("{summary}", summary)
        messages = [SystemMessage(f"{system.rstrip()}\n\n{context}"), HumanMessage(question[:1000])]
        chunks = llm.stream(messages)
        try:
            for chunk in chunks:
                if chunk.content:
                    yield str(chunk.content)
        finally:
            chunks.close()  # frees the model at once when the caller stops early

    # -- the loop --

    def stream(self, question: str, image: str | None = None) -> Iterator[dict[str, Any]]:
        """Events for a UI: tool calls, media, answer text as it is written, then `final` (the result).

        The `final` answer is authoritative: when the streamed text fails the grounding check, it is
        replaced by the plain answer (event `replace`).
        """
        people, places = catalog_names(self.library)
        u = understand(question, today=self.today, people=people, places=places, image=image)
        yield {"type": "understood", "understanding": asdict(u)}
        steps: list[Step] = []
        for step in self._direct(u, image):
            steps.append(step)
            yield {"type": "tool", "name": step.name, "args": step.args, "ok": step.ok}
        if (u.intent == "chat" and not is_greeting(question)) or (self.follow_up and steps):
            for step in self._llm_steps(question, steps, Refs()):
                yield {"type": "tool", "name": step.name, "args": step.args, "ok": step.ok}
        refs = Refs()
        data = data_block(steps, refs)  # numbers references in data order
        collect_media(steps, refs)
        summary = plain_answer(u, steps, refs)
        yield {"type": "media", "media": refs.media()}
        facts = expected_facts(u, steps)
        pieces: list[str] = []
        problems: list[str] = ["no LLM answer"]
        if steps:
            stream = self._llm_answer(question, data, summary)
            for piece in stream:
                pieces.append(piece)
                yield {"type": "token", "text": piece}
                problems = early_problems("".join(pieces), data + summary, question, len(refs.items))
                if problems:  # stop a weak model as soon as it goes wrong: it will be replaced anyway
                    stream.close()
                    break
            if pieces and not problems:
                problems = answer_problems(clean_llm_text("".join(pieces)), data + summary, question, facts,
                                           len(refs.items), must_cite=u.intent == "search" and bool(refs.items))
        answer = clean_llm_text("".join(pieces))
        if problems:
            log.info("LLM answer replaced (%s): %r", "; ".join(problems), answer[:200])
            answer = summary
            if pieces:
                yield {"type": "replace", "text": cite_names(answer, refs.items), "problems": problems}
        result = {"answer": cite_names(answer, refs.items), "media": refs.media(),
                  "tool_calls": [{"name": s.name, "args": s.args} for s in steps]}
        yield {"type": "final", "result": result}

    def ask(self, question: str, image: str | None = None) -> dict[str, Any]:
        """{"answer", "media": [{media_id, path, kind, frame_time?}], "tool_calls": [{name, args}]}."""
        result: dict[str, Any] = {}
        for event in self.stream(question, image=image):
            if event["type"] == "final":
                result = event["result"]
        return result


def ask(question: str, library: Library, image: str | None = None, **options: Any) -> dict[str, Any]:
    """One question, one answer (see `Agent.ask`)."""
    return Agent(library, **options).ask(question, image=image)
