"""Query understanding: many phrasings → intent, filters and semantic text, relative to a fixed `today`."""

from __future__ import annotations

from datetime import date

import pytest

from assistant.understand import Span, merge_spans, parse_date_phrase, semantic_rest, span_filters, understand

TODAY = date(2026, 11, 15)  # a Sunday in November
PEOPLE = ["Alice", "Ada Lovelace", "June"]
PLACES = ["Paris", "Île-de-France", "France", "Bath", "San Francisco"]


def u(question: str, today: date = TODAY, **kwargs):  # type: ignore[no-untyped-def]
    return understand(question, today=today, people=PEOPLE, places=PLACES, **kwargs)


@pytest.mark.parametrize("question, filters", [
    ("photos from 2019", {"kind": "photo", "year": 2019}),
    ("2019", {"year": 2019}),
    ("show me videos from 2014", {"kind": "video", "year": 2014}),
    ("clips in March 2020", {"kind": "video", "year": 2020, "month": 3}),
    ("pictures from Mar 2019", {"kind": "photo", "year": 2019, "month": 3}),
    ("pics from 2020-03", {"kind": "photo", "year": 2020, "month": 3}),
    ("photos between 2018 and 2020", {"kind": "photo", "date_from": "2018-01-01", "date_to": "2020-12-31"}),
    ("movies from 2015 to 2017", {"kind": "video", "date_from": "2015-01-01", "date_to": "2017-12-31"}),
    ("photos 2015-2017", {"kind": "photo", "date_from": "2015-01-01", "date_to": "2017-12-31"}),
    ("between March 2019 and June 2020", {"date_from": "2019-03-01", "date_to": "2020-06-30"}),
    ("last year", {"year": 2025}),
    ("this year", {"year": 2026}),
    ("photos this month", {"kind": "photo", "year": 2026, "month": 11}),
    ("videos last month", {"kind": "video", "year": 2026, "month": 10}),
    ("pictures from last summer", {"kind": "photo", "date_from": "2026-06-01", "date_to": "2026-08-31"}),
    ("this summer", {"date_from": "2026-06-01", "date_to": "2026-08-31"}),
    ("last winter", {"date_from": "2025-12-01", "date_to": "2026-02-28"}),
    ("summer 2019", {"date_from": "2019-06-01", "date_to": "2019-08-31"}),
    ("the winter of 2018", {"date_from": "2018-12-01", "date_to": "2019-02-28"}),
    ("photos since 2018", {"kind": "photo", "date_from": "2018-01-01"}),
    ("after 2015", {"date_from": "2016-01-01"}),
    ("videos before 2010", {"kind": "video", "date_to": "2009-12-31"}),
    ("until May 2012", {"date_to": "2012-05-31"}),
    ("on 5 March 2020", {"date_from": "2020-03-05", "date_to": "2020-03-05"}),
    ("March 5th, 2020", {"date_from": "2020-03-05", "date_to": "2020-03-05"}),
    ("yesterday", {"date_from": "2026-11-14", "date_to": "2026-11-14"}),
    ("today", {"date_from": "2026-11-15", "date_to": "2026-11-15"}),
    ("last week", {"date_from": "2026-11-02", "date_to": "2026-11-08"}),
    ("3 weeks ago", {"date_from": "2026-10-19", "date_to": "2026-10-25"}),
    ("two years ago", {"year": 2024}),
    ("in the last 30 days", {"date_from": "2026-10-16", "date_to": "2026-11-15"}),
    ("photos from the past 2 years", {"kind": "photo", "date_from": "2024-11-15", "date_to": "2026-11-15"}),
    ("in june", {"person": "June"}),  # a known person wins over the month
    ("in december", {"month": 12}),
    ("photos in may 2019", {"kind": "photo", "year": 2019, "month": 5}),
    ("christmas 2019", {"date_from": "2019-12-24", "date_to": "2019-12-26"}),
])
def test_dates_and_types(question: str, filters: dict) -> None:
    assert u(question).filters == filters


@pytest.mark.parametrize("question, kind", [
    ("videos", "video"), ("clips of the kids", "video"), ("movies", "video"), ("footage", "video"),
    ("photos", "photo"), ("pictures", "photo"), ("pics", "photo"), ("images of dogs", "photo"),
    ("photos and videos", None), ("everything from 2019", None),
])
def test_media_types(question: str, kind: str | None) -> None:
    assert u(question).filters.get("kind") == kind


@pytest.mark.parametrize("question, intent, semantic", [
    ("show beach videos from 2019", "search", "beach"),
    ("photos of a cat", "search", "cat"),
    ("show me a dog on the beach", "search", "dog on the beach"),
    ("how many photos do I have from 2003?", "count", ""),
    ("How many cat pictures are there", "count", "cat"),
    ("count my videos", "count", ""),
    ("who appears most often?", "people", ""),
    ("Who is in my photos?", "people", ""),
    ("list all people", "people", ""),
    ("timeline of my photos per year", "timeline", ""),
    ("which years have the most videos", "timeline", ""),
    ("where was I in 2019?", "places", ""),
    ("which places have I been to", "places", ""),
    ("summarize video 12", "summarize_video", ""),
    ("what happens in beach.mp4", "summarize_video", ""),
    ("describe the clip #4", "summarize_video", ""),
    ("hi", "chat", ""),
    ("hello, what can you do?", "chat", ""),
    ("thanks! show cats", "search", "cats"),
    ("may I see cats", "search", "cats"),
])
def test_intents_and_semantic_text(question: str, intent: str, semantic: str) -> None:
    got = u(question)
    assert (got.intent, got.semantic_text) == (intent, semantic)


def test_counting_question_has_filters_only() -> None:
    got = u("how many photos do I have from 2003?")
    assert got.intent == "count" and got.filters == {"kind": "photo", "year": 2003} and not got.semantic_text


def test_who_appears_most() -> None:
    got = u("who appears most often?")
    assert got.intent == "people" and got.most
    assert not u("who is in my photos").most


def test_people_names_from_the_catalog() -> None:
    assert u("pics of Alice at the beach").filters == {"person": "Alice", "kind": "photo"}
    assert u("pics of Alice at the beach").semantic_text == "beach"
    assert u("photos of alice's birthday").filters["person"] == "Alice"
    assert u("photos of Ada").filters["person"] == "Ada Lovelace"  # a unique first name
    assert u("Ada Lovelace in 2019").filters == {"person": "Ada Lovelace", "year": 2019}
    assert "person" not in u("photos of Bob").filters  # unknown names stay in the semantic text
    assert u("photos of Bob").semantic_text == "Bob"


def test_places_from_the_catalog() -> None:
    assert u("photos in paris").filters == {"place": "Paris", "kind": "photo"}
    assert u("videos from San Francisco last year").filters == {"place": "San Francisco", "kind": "video",
                                                                 "year": 2025}
    assert u("photos in ile-de-france").filters["place"] == "Île-de-France"  # accents folded
    assert u("Bath photos").filters.get("place") == "Bath"  # capitalised: a place
    assert "place" not in u("bath toys").filters  # a lower-case common word without a cue is not a place


def test_photos_like_this() -> None:
    got = u("photos like this", image="/x/cat.jpg")
    assert got.intent == "search" and got.similar and got.filters == {"image": "/x/cat.jpg"}
    assert u("more like this").similar
    assert u("find similar photos from 2019", image="7").filters == {"image": "7", "year": 2019, "kind": "photo"}


def test_media_references() -> None:
    assert u("summarize video 12").media_ref == "12"
    assert u("what happens in beach.mp4").media_ref == "beach.mp4"
    assert u("videos 2014").media_ref is None  # a year is not an id
    assert u("describe the video", image="/x/clip.mp4").media_ref == "/x/clip.mp4"


def test_relative_dates_follow_today() -> None:
    assert u("last summer", today=date(2026, 7, 10)).filters == {"date_from": "2025-06-01", "date_to": "2025-08-31"}
    assert u("last summer", today=date(2026, 9, 1)).filters == {"date_from": "2026-06-01", "date_to": "2026-08-31"}
    assert u("last month", today=date(2026, 1, 20)).filters == {"year": 2025, "month": 12}
    assert u("from november to january", today=date(2026, 2, 15)).filters == {"date_from": "2025-11-01",
                                                                               "date_to": "2026-01-31"}
    assert u("since march", today=date(2026, 2, 1)).filters == {"date_from": "2025-03-01"}
    assert u("this winter", today=date(2026, 1, 5)).filters == {"date_from": "2025-12-01", "date_to": "2026-02-28"}


def test_date_phrase_units() -> None:
    assert parse_date_phrase("2019", TODAY) == Span(date(2019, 1, 1), date(2019, 12, 31), "year")
    assert parse_date_phrase("February 2020", TODAY) == Span(date(2020, 2, 1), date(2020, 2, 29), "month")
    assert parse_date_phrase("june", TODAY).unit == "month-any-year"  # type: ignore[union-attr]
    assert parse_date_phrase("not a date", TODAY) is None


def test_span_filters_and_merging() -> None:
    assert span_filters(Span(date(2019, 1, 1), date(2019, 12, 31))) == {"year": 2019}
    assert span_filters(Span(date(2019, 2, 1), date(2019, 2, 28))) == {"year": 2019, "month": 2}
    assert span_filters(Span(date(2019, 2, 3), date(2019, 2, 8))) == {"date_from": "2019-02-03",
                                                                      "date_to": "2019-02-08"}
    two = [Span(date(2018, 1, 1), date(2018, 12, 31), "year"), Span(date(2019, 1, 1), date(2019, 12, 31), "year")]
    assert merge_spans(two) == {"date_from": "2018-01-01", "date_to": "2019-12-31"}
    assert u("photos from 2018 and 2019").filters == {"kind": "photo", "date_from": "2018-01-01",
                                                      "date_to": "2019-12-31"}


def test_semantic_rest_drops_filler_at_the_ends_only() -> None:
    assert semantic_rest("show me   of a cat   ?") == "cat"
    assert semantic_rest("the dog on the beach") == "dog on the beach"
    assert semantic_rest("how many do I have") == ""


def test_numbers_are_not_years_or_ids_by_accident() -> None:
    got = u("show me 5 photos of dogs")
    assert "year" not in got.filters and got.semantic_text.endswith("dogs")
