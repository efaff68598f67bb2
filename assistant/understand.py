"""Query understanding without a model: dates, media types, people, places and the kind of question.

Most questions to a photo library are filters, counts and group-bys. Turning "beach videos from last summer"
into `{kind: video, date_from: 2026-06-01, date_to: 2026-08-31}` + "beach" by rules makes the answer right
whatever the size of the LLM, and lets simple questions skip the LLM's tool choice entirely.

Pure: everything it knows about the library (people names, places) and the date (`today`) is passed in.
Absolute dates are parsed by python-dateutil (which fields a phrase fixes is read by parsing it against two
different defaults); relative phrases ("last summer", "3 weeks ago") are located by regex and computed with
`relativedelta`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Literal, Sequence

from dateutil import parser as date_parser
from dateutil.relativedelta import relativedelta

Intent = Literal["search", "count", "people", "timeline", "places", "summarize_video", "chat"]


@dataclass(frozen=True)
class Understanding:
    """What a question asks for. `filters` uses `search_media`'s keyword names (dates as ISO strings)."""

    intent: Intent
    filters: dict[str, Any] = field(default_factory=dict)
    semantic_text: str = ""
    similar: bool = False  # "photos like this": search by the attached image
    most: bool = False  # "who appears most often"
    group_by: Literal["year", "month"] | None = None  # timeline granularity
    media_ref: str | None = None  # a file the question names ("video 12", "beach.mp4")


@dataclass(frozen=True)
class Span:
    """A closed range of days; `unit` says what the phrase named (day, month, year, or a free range)."""

    start: date
    end: date
    unit: Literal["day", "week", "month", "year", "range", "month-any-year", "open"] = "range"


# --- vocabulary -------------------------------------------------------------------------------------------

_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_YEAR = r"(?:19|20)\d{2}"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
# Absolute date phrases dateutil can read, most specific first.
_DATE = (rf"(?:{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}|{_MONTH}\s+{_DAY},?\s+{_YEAR}|"
         rf"{_MONTH},?\s+(?:of\s+)?{_YEAR}|{_YEAR}-\d{{2}}-\d{{2}}|{_YEAR}-\d{{2}}(?!\d)|{_YEAR}"
         rf"|{_DAY}\s+(?:of\s+)?{_MONTH}|{_MONTH}\s+{_DAY}\b|{_MONTH})")
_SEASONS = {"spring": (3, 5), "summer": (6, 8), "autumn": (9, 11), "fall": (9, 11), "winter": (12, 2)}
_UNITS = {"day": "days", "week": "weeks", "month": "months", "year": "years"}
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "couple of": 2, "few": 3}
_COUNT = r"(\d{1,3}|a|an|one|two|three|four|five|six|seven|eight|nine|ten|twelve|couple of|few)"

_VIDEO_WORDS = r"videos?|clips?|movies?|footage|films?|recordings?"
_PHOTO_WORDS = r"photos?|photographs?|pictures?|pics?|images?|snapshots?|snaps"

# Words that carry no search meaning once filters are taken out ("show me ... from").
_FILLER = frozenset("""show me find search for get give display list see view look looking want wanna i i'm my
mine our we us you your can could would will please all every any some the a an of from in on at during
with and or to do does did have has had are is was were there that this these those which what when where
how many much number count total taken took take shot shoot shots made recorded filmed captured been be by about
library collection ones one only just also here it its let let's lets whole entire tell more etc may might
happens happened happening goes going on
shall should hi hello hey thanks thank please ok okay""".split())

_INTENT_PATTERNS: list[tuple[Intent, re.Pattern[str]]] = [
    ("summarize_video", re.compile(
        r"\b(summari[sz]e|describe|what happens|what's happening|what is happening|what goes on|"
        r"tell me about|what is in|what's in)\b.*\b(video|clip|movie|footage)\b|\bsummary of\b")),
    ("count", re.compile(r"\bhow many\b|\bcount\b|\bnumber of\b|\bhow much\b")),
    ("timeline", re.compile(r"\btimeline\b|\b(per|by|each|every) (year|month)\b|\b(which|what) (years?|months?)\b|"
                            r"\bwhen did i\b|\bover time\b|\bbusiest\b|\bmost active\b|\bover the years\b")),
    ("places", re.compile(r"\bwhere (was|were|have|did|do)\b|\b(which|what) (places|cities|countries)\b|"
                          r"\blist (of |all |the )*places\b|\bwhere .*\btaken\b")),
    ("people", re.compile(r"^\s*who\b|\bwho (appears|shows|is|are|was|were|'s)\b|\b(which|what) (people|persons|faces)\b|"
                          r"\b(list|show|name)( me)?( all| the)* (people|persons|faces)\b|^\s*(people|faces)\s*\??$")),
]
_MOST = re.compile(r"\b(most|often|frequent\w*|top)\b")
_SIMILAR = re.compile(r"\b(like|similar to|resembling|resembles|looks? like) (this|that|these|it|mine)\b|"
                      r"\bmore like (this|that)\b|\bsimilar(?= (ones|photos|pictures|images|videos|shots)\b)|"
                      r"\bphotos like\b")
_CHAT = re.compile(r"^\s*(hi|hello|hey|thanks|thank you|help|what can you do|who are you|good (morning|evening))\b")
_MEDIA_REF = re.compile(
    r"\b(?:video|clip|photo|picture|file|media|movie|item)\s*(?:(#|no\.?|number|id)\s*)?(\d{1,9})\b|"
    r"#(\d{1,9})\b|"
    r"([\w.\-]+\.(?:mp4|mov|m4v|avi|mkv|webm|3gp|mts|jpe?g|png|heic|heif|webp|gif|tiff?|dng|cr2|nef|arw))\b",
    re.IGNORECASE)
_ABOUT_VIDEO = re.compile(r"\b(summari[sz]e|describe|what happens|what's happening|what is happening|what goes on|"
                          r"tell me about|what is in|what's in|summary of)\b")
_VIDEO_FILE = re.compile(r"\.(mp4|mov|m4v|avi|mkv|webm|3gp|mts)$", re.IGNORECASE)
_GREETING_WORDS = frozenset("hi hello hey thanks thank you help what can do who are good morning evening".split())
_PLACE_CUE = re.compile(r"\b(in|at|from|near|around|to|of)\s+(the\s+)?$")


# --- helpers ----------------------------------------------------------------------------------------------

def fold(text: str) -> str:
    """Lowercase, accents removed: how names in questions are compared with names in the catalog."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _number(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBERS[word]


def _month_end(day: date) -> date:
    return day + relativedelta(day=31)


def parse_date_phrase(phrase: str, today: date) -> Span | None:
    """A span for an absolute phrase ('2019', 'March 2020', '5 March 2020', 'june'), via dateutil.

    Fields the phrase does not fix come out different under two defaults; that tells the span's unit.
    A month without a year means that month in any year.
    """
    text = re.sub(r"\bof\b", " ", phrase)
    try:
        low = date_parser.parse(text, default=datetime(4, 1, 1))
        high = date_parser.parse(text, default=datetime(8, 12, 28))
    except (ValueError, OverflowError):
        return None
    has_year, has_month, has_day = low.year == high.year, low.month == high.month, low.day == high.day
    if not has_year:
        if has_month and not has_day:
            return Span(date(today.year, low.month, 1), _month_end(date(today.year, low.month, 1)), "month-any-year")
        if has_month and has_day:  # "5 March": the latest such day not after today
            day = date(today.year, low.month, low.day)
            return Span(day if day <= today else day - relativedelta(years=1),
                        day if day <= today else day - relativedelta(years=1), "day")
        return None
    if not has_month:
        return Span(date(low.year, 1, 1), date(low.year, 12, 31), "year")
    if not has_day:
        first = date(low.year, low.month, 1)
        return Span(first, _month_end(first), "month")
    return Span(low.date(), low.date(), "day")


def _latest_month(month: int, today: date) -> Span:
    """The latest calendar month with this number that has begun ('since march' in February: last March)."""
    first = date(today.year if month <= today.month else today.year - 1, month, 1)
    return Span(first, _month_end(first), "month")


def _season(name: str, year: int) -> Span:
    """A season of a year (northern hemisphere); winter Y runs from December Y to February Y+1."""
    first, last = _SEASONS[name]
    start = date(year, first, 1)
    end_year = year + 1 if last < first else year
    return Span(start, _month_end(date(end_year, last, 1)), "range")


def _relative_season(name: str, which: str, today: date) -> Span:
    """'this summer' is this year's; 'last summer' is the latest summer that has ended."""
    year = today.year
    current = _season(name, year)
    if name == "winter" and today.month <= 2:
        current = _season(name, year - 1)
    if which in ("this", "current"):
        return current
    if which == "next":
        return _season(name, current.start.year + 1)
    # last / past / previous: the latest one that is over
    candidate = current
    while candidate.end >= today:
        candidate = _season(name, candidate.start.year - 1)
    return candidate


def _unit_period(unit: str, anchor: date) -> Span:
    """The calendar day / week (Mon-Sun) / month / year containing `anchor`."""
    if unit == "day":
        return Span(anchor, anchor, "day")
    if unit == "week":
        monday = anchor - timedelta(days=anchor.weekday())
        return Span(monday, monday + timedelta(days=6), "week")
    if unit == "month":
        first = anchor.replace(day=1)
        return Span(first, _month_end(first), "month")
    return Span(date(anchor.year, 1, 1), date(anchor.year, 12, 31), "year")


def span_filters(span: Span) -> dict[str, Any]:
    """Filters for a span: a whole year or month by number (fast scalar filters), else an ISO date range."""
    if span.unit == "month-any-year":
        return {"month": span.start.month}
    if span.unit == "open":
        out: dict[str, Any] = {}
        if span.start != date.min:
            out["date_from"] = span.start.isoformat()
        if span.end != date.max:
            out["date_to"] = span.end.isoformat()
        return out
    if span.start == date(span.start.year, 1, 1) and span.end == date(span.start.year, 12, 31):
        return {"year": span.start.year}
    if span.start.day == 1 and span.end == _month_end(span.start):
        return {"year": span.start.year, "month": span.start.month}
    return {"date_from": span.start.isoformat(), "date_to": span.end.isoformat()}


# --- date extraction ----------------------------------------------------------------------------------------

class _Text:
    """The lowercased question with a mask of characters already used by a filter."""

    def __init__(self, text: str) -> None:
        self.low = text.lower()
        self.used = [False] * len(text)

    def take(self, pattern: str | re.Pattern[str]) -> Iterable[re.Match[str]]:
        """Matches over unused text only; each match is marked used when the caller keeps it (by yielding)."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        for match in list(regex.finditer(self.low)):
            if any(self.used[match.start():match.end()]):
                continue
            yield match

    def mark(self, match: re.Match[str]) -> None:
        for i in range(match.start(), match.end()):
            self.used[i] = True

    def rest(self, original: str) -> str:
        return "".join(" " if used else ch for ch, used in zip(original, self.used))


def _date_spans(text: _Text, today: date, bare_months: bool = True) -> list[Span]:
    """Date phrases in the text, marked used. Without `bare_months`, a month with no year ('june') is left
    alone, so that a person named June can claim it first."""
    spans: list[Span] = []

    def keep(match: re.Match[str], span: Span | None) -> None:
        if span is not None:
            spans.append(span)
            text.mark(match)

    # Ranges: "between 2018 and 2020", "from March 2019 to June 2020", "2015-2017", "2015 to 2017".
    for match in text.take(rf"\b(?:between\s+({_DATE})\s+and\s+({_DATE})|(?:from\s+)?({_DATE})\s*"
                           rf"(?:to|until|till|through|thru|-|–)\s*({_DATE}))\b"):
        first, second = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
        a, b = parse_date_phrase(first, today), parse_date_phrase(second, today)
        if a and b and a.unit == b.unit == "month-any-year":  # "from june to august": the latest such stretch
            a = _latest_month(a.start.month, today)
            b_start = a.start.replace(month=b.start.month) + relativedelta(years=int(b.start.month < a.start.month))
            b = Span(b_start, _month_end(b_start), "month")
        if a and b and "month-any-year" not in (a.unit, b.unit):
            keep(match, Span(min(a.start, b.start), max(a.end, b.end), "range"))
    # Open ranges: "since 2018", "after May 2019", "before 2010", "until 2012".
    for match in text.take(rf"\b(since|after|starting|from|before|until|till|prior to|up to)\s+({_DATE})\b"):
        span = parse_date_phrase(match.group(2), today)
        if span is not None and span.unit == "month-any-year":  # "since march": the latest March
            span = _latest_month(span.start.month, today)
        if span is None:
            continue
        word = match.group(1)
        if word in ("since", "starting"):
            keep(match, Span(span.start, date.max, "open"))
        elif word == "after":
            keep(match, Span(span.end + timedelta(days=1), date.max, "open"))
        elif word in ("before", "prior to"):
            keep(match, Span(date.min, span.start - timedelta(days=1), "open"))
        elif word in ("until", "till", "up to"):
            keep(match, Span(date.min, span.end, "open"))
        # "from 2019" alone is just 2019: handled below
    # Seasons: "last summer", "summer 2019", "the winter of 2018", "this spring".
    season_names = "|".join(_SEASONS)
    for match in text.take(rf"\b(?:(this|last|past|previous|next|current)\s+)?({season_names})"
                           rf"(?:\s+(?:of\s+)?({_YEAR}))?\b"):
        which, name, year = match.groups()
        if year:
            keep(match, _season(name, int(year)))
        elif which:
            keep(match, _relative_season(name, which, today))
    # Relative periods.
    for match in text.take(r"\b(today|tonight|this morning|this evening)\b"):
        keep(match, Span(today, today, "day"))
    for match in text.take(r"\b(yesterday|last night)\b"):
        keep(match, Span(today - timedelta(days=1), today - timedelta(days=1), "day"))
    for match in text.take(r"\b(this|current|last|past|previous)\s+(week|month|year)\b"):
        which, unit = match.groups()
        anchor = today if which in ("this", "current") else today - relativedelta(**{_UNITS[unit]: 1})
        keep(match, _unit_period(unit, anchor))
    for match in text.take(rf"\b(?:in\s+|over\s+|during\s+|within\s+)?(?:the\s+)?(?:last|past)\s+{_COUNT}\s+"
                           r"(day|week|month|year)s?\b"):
        amount, unit = match.groups()
        keep(match, Span(today - relativedelta(**{_UNITS[unit]: _number(amount)}), today, "range"))
    for match in text.take(rf"\b{_COUNT}\s+(day|week|month|year)s?\s+ago\b"):
        amount, unit = match.groups()
        keep(match, _unit_period(unit, today - relativedelta(**{_UNITS[unit]: _number(amount)})))
    for match in text.take(rf"\b(christmas|xmas|new year'?s eve)(?:\s+({_YEAR}))?\b"):
        name, year = match.groups()
        y = int(year) if year else (today.year if today >= date(today.year, 12, 24) else today.year - 1)
        keep(match, Span(date(y, 12, 24), date(y, 12, 26), "range") if name != "new year's eve" and
             name != "new years eve" else Span(date(y, 12, 31), date(y, 12, 31), "day"))
    # Absolute: "in March 2020", "2019", "on 5 March 2020", "in june". "may" alone is a verb: needs "in".
    for match in text.take(rf"\b(?:(?:in|on|during|from|of|at)\s+(?:the\s+)?)?({_DATE})\b"):
        phrase = match.group(1)
        bare_month = re.fullmatch(_MONTH, phrase) is not None
        if not bare_months and not re.search(_YEAR, phrase):
            continue
        if bare_month and (phrase in ("may", "mar", "march", "jan", "dec", "sep", "oct", "nov", "aug", "jun", "jul")
                           and not match.group(0).startswith(("in ", "during "))):
            continue
        keep(match, parse_date_phrase(phrase, today))
    return spans


def merge_spans(spans: Sequence[Span]) -> dict[str, Any]:
    """One date filter from all spans found: one span as is, several as the range covering them all."""
    if not spans:
        return {}
    if len(spans) == 1:
        return span_filters(spans[0])
    if all(s.unit == "month-any-year" for s in spans):
        return span_filters(spans[0])
    closed = [s for s in spans if s.unit != "month-any-year"]
    return span_filters(Span(min(s.start for s in closed), max(s.end for s in closed),
                             "open" if any(s.unit == "open" for s in closed) else "range"))


# --- names --------------------------------------------------------------------------------------------------

def _find_name(text: _Text, names: Iterable[str], original: str, cue: re.Pattern[str] | None = None) -> str | None:
    """The longest known name the question contains as whole words (case/accent-insensitive), marked used.

    With a `cue`, a name typed in lower case only counts after it ("in paris"): place names such as Bath,
    Nice or Mobile are also plain words.
    """
    folded = fold(original)
    if len(folded) != len(original):  # folding changed lengths (rare ligatures): fall back to lowercase
        folded = original.lower()
    candidates = sorted({n for n in names if n and len(n.strip()) >= 2}, key=len, reverse=True)
    for name in candidates:
        pattern = r"(?<![\w])" + r"\s+".join(re.escape(w) for w in fold(name).split()) + r"(?:'s)?(?![\w])"
        for match in re.finditer(pattern, folded):
            if any(text.used[match.start():match.end()]):
                continue
            typed = original[match.start():match.end()]
            if cue is not None and not typed[:1].isupper() and not cue.search(folded[:match.start()]):
                continue
            text.mark(match)
            return name
    return None


def _first_names(people: Iterable[str]) -> dict[str, str]:
    """First names that belong to exactly one known person ('Ada' -> 'Ada Lovelace')."""
    by_first: dict[str, list[str]] = {}
    for name in people:
        parts = name.split()
        if len(parts) > 1 and len(parts[0]) >= 3:
            by_first.setdefault(parts[0], []).append(name)
    return {first: names[0] for first, names in by_first.items() if len(names) == 1}


# --- the whole question -------------------------------------------------------------------------------------

def _media_ref(text: _Text) -> str | None:
    """A file the question names: 'video 12', 'photo #3', '#7', 'beach.mp4' (a bare year is not an id)."""
    for match in text.take(_MEDIA_REF):
        marker, number, hashed, name = match.groups()
        if number and not marker and re.fullmatch(_YEAR, number):
            continue
        text.mark(match)
        return number or hashed or name
    return None


def _media_kind(text: _Text) -> str | None:
    kinds = set()
    for pattern, kind in ((rf"\b({_VIDEO_WORDS})\b", "video"), (rf"\b({_PHOTO_WORDS})\b", "photo")):
        for match in text.take(pattern):
            text.mark(match)
            kinds.add(kind)
    return kinds.pop() if len(kinds) == 1 else None


def _intent(low: str, has_query: bool, media_ref: str | None) -> Intent:
    for intent, pattern in _INTENT_PATTERNS:
        if pattern.search(low):
            return intent
    if media_ref and _ABOUT_VIDEO.search(low) and _VIDEO_FILE.search(media_ref):
        return "summarize_video"
    return "search" if has_query else "chat"


def is_greeting(question: str) -> bool:
    """'hi', 'thanks!', 'what can you do?': small talk that needs no tool."""
    low = question.lower().strip()
    return bool(_CHAT.search(low)) and all(w in _GREETING_WORDS or w in _FILLER
                                           for w in re.findall(r"[\w']+", low))


def semantic_rest(text: str) -> str:
    """What is left to search for by meaning: filler words dropped from both ends, punctuation tidied."""
    words = re.findall(r"[\w'’-]+", text)
    while words and words[0].lower().strip("'’") in _FILLER:
        words.pop(0)
    while words and words[-1].lower().strip("'’") in _FILLER:
        words.pop()
    return " ".join(words)


def understand(question: str, today: date | None = None, people: Sequence[str] = (),
               places: Sequence[str] = (), image: str | None = None) -> Understanding:
    """Intent, filters and the semantic rest of a question; `people`/`places` are the catalog's names."""
    today = today or date.today()
    question = question.strip()
    text = _Text(question)
    low = text.low
    filters: dict[str, Any] = {}

    similar = bool(_SIMILAR.search(low))
    for match in text.take(_SIMILAR):
        text.mark(match)
    media_ref = _media_ref(text)
    spans = _date_spans(text, today, bare_months=False)
    person = _find_name(text, people, question)
    if person is None:
        short = _first_names(people)
        first = _find_name(text, short, question)
        person = short.get(first) if first else None
    if person:
        filters["person"] = person
    place = _find_name(text, [p for p in places if len(p) >= 3], question, cue=_PLACE_CUE)
    if place:
        filters["place"] = place
    filters.update(merge_spans(spans + _date_spans(text, today)))
    kind = _media_kind(text)
    if kind:
        filters["kind"] = kind
    if similar and image:
        filters["image"] = image
    semantic = semantic_rest(text.rest(question))
    greeting = bool(_CHAT.search(low)) and all(w.lower() in _GREETING_WORDS for w in semantic.split())
    has_query = bool((semantic and not greeting) or filters or similar or media_ref)
    intent = _intent(low, has_query, media_ref)
    if intent == "chat" and similar:
        intent = "search"
    if intent == "summarize_video" and media_ref is None and image:
        media_ref = image
    if intent == "summarize_video":  # "what happens in the beach video": the rest names the video
        for match in text.take(_ABOUT_VIDEO):
            text.mark(match)
        semantic = semantic_rest(text.rest(question))
    return Understanding(
        intent=intent, filters=filters,
        semantic_text=semantic if intent in ("search", "count", "summarize_video") else "",
        similar=similar, most=intent == "people" and bool(_MOST.search(low)),
        group_by=("year" if re.search(r"\b(years?|yearly|annual)\b", low) else "month") if intent == "timeline" else None,
        media_ref=media_ref)
