"""The one Milvus client wrapper: Milvus Lite file by default, a Milvus server by URI.

Image vectors (one per photo and per kept keyframe) carry the scalar fields filters need (kind, taken time,
year, month), so a filtered similarity search is one call with the filter inside the vector search. Opening
Milvus Lite costs about a second and a few hundred MB, so the client is created lazily.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Iterable, Iterator, Sequence

FRAME_BITS = 20  # vector id = media_id << FRAME_BITS | (keyframe index + 1); photos use slot 0
PAGE_BYTES = 8192 * 512 * 32  # Python lists of floats per page of a bulk read (see iterate_images)
_OPEN: dict[str, int] = {}  # open clients per Milvus Lite file in this process (its server is shared)


def _explain(error: Exception, uri: str) -> str:
    text = f"{type(error).__name__}: {error}"
    if "MilvusLite" in text or "lock" in text.lower():
        return f"{uri} is in use by another photo-engine process (Milvus Lite allows one at a time)"
    return text


def wallclock_ts(value: "datetime | None") -> int:
    """Seconds for a naive camera wall-clock time, read as if it were UTC (0 when unknown): filters compare these."""
    return int(value.replace(tzinfo=timezone.utc).timestamp()) if value else 0


def image_collection(model_id: str) -> str:
    """One collection per image model: vectors of different models are not comparable."""
    return "images_" + re.sub(r"[^0-9A-Za-z_]", "_", model_id)


def image_vector_id(media_id: int, frame_idx: int | None) -> int:
    return (media_id << FRAME_BITS) | (0 if frame_idx is None else frame_idx + 1)


class VectorStore:
    """Thin adapter around pymilvus' MilvusClient."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    @cached_property
    def client(self):  # type: ignore[no-untyped-def]
        from pymilvus import MilvusClient

        client = MilvusClient(self.uri)
        _OPEN[self.uri] = _OPEN.get(self.uri, 0) + 1
        return client

    def _ready(self, collection: str) -> bool:
        """True when the collection exists, loaded for search (a fresh process finds it released)."""
        if not self.client.has_collection(collection):
            return False
        if collection not in self.__dict__.setdefault("_loaded", set()):
            self.client.load_collection(collection)
            self.__dict__["_loaded"].add(collection)
        return True

    def health(self) -> tuple[bool, str]:
        """(reachable, detail) without raising."""
        try:
            collections = self.client.list_collections()
        except Exception as error:  # any client/server failure means "not reachable"
            return False, _explain(error, self.uri)
        return True, f"{len(collections)} collections"

    def ensure_images(self, model_id: str, dim: int) -> str:
        """Create the image collection of a model (if missing) and return its name."""
        name = image_collection(model_id)
        if self._ready(name):
            return name
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("media_id", DataType.INT64)
        schema.add_field("frame_id", DataType.INT64)
        schema.add_field("time", DataType.FLOAT)
        schema.add_field("kind", DataType.VARCHAR, max_length=8)
        schema.add_field("taken_ts", DataType.INT64)
        schema.add_field("year", DataType.INT32)
        schema.add_field("month", DataType.INT32)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type="FLAT", metric_type="COSINE")
        self.client.create_collection(name, schema=schema, index_params=index)
        return name

    def upsert_images(self, collection: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows and self._ready(collection):
            self.client.upsert(collection, list(rows))

    def delete_media(self, collection: str, media_ids: Iterable[int]) -> None:
        ids = [int(i) for i in media_ids]
        if ids and self._ready(collection):
            self.client.delete(collection, filter=f"media_id in {ids}")

    def search_images(self, collection: str, vector: Sequence[float], limit: int,
                      filter_expr: str = "") -> list[dict[str, Any]]:
        """Nearest images (cosine similarity, best first), with the filter applied inside the search."""
        if not self._ready(collection):
            return []
        hits = self.client.search(collection, data=[list(map(float, vector))], limit=limit,
                                  filter=filter_expr, output_fields=["media_id", "frame_id", "time", "kind"])
        return [{"media_id": h["entity"]["media_id"], "frame_id": h["entity"]["frame_id"],
                 "time": h["entity"]["time"], "kind": h["entity"]["kind"], "score": float(h["distance"])}
                for h in hits[0]]

    def image_vector(self, collection: str, vector_id: int) -> list[float] | None:
        if not self._ready(collection):
            return None
        rows = self.client.get(collection, ids=[vector_id], output_fields=["vector"])
        return list(rows[0]["vector"]) if rows else None

    def count(self, collection: str) -> int:
        if not self._ready(collection):
            return 0
        return int(self.client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def iterate_images(self, collection: str, fields: Sequence[str], filter_expr: str = "") -> Iterator[dict[str, Any]]:
        """Every row (id, vector and `fields`) of a collection, in pages of up to 8,192 (a bulk read for snapshots).

        Why big pages: in Milvus Lite each page is a new query whose cost grows with the collection (at 1M rows
        ~5 s for a page of 2,000, ~10 s for 16,384), so a full read of 1M rows took ~45 min in pages of 2,000.
        Not bigger: a page arrives as Python lists of floats, ~32 bytes a number, so pages are also held to
        PAGE_BYTES (8,192 rows of 512-d; 3,276 of MobileNet's 1280-d: reading the 10k-file benchmark's 13.5k
        such rows peaked 0.60 GB above the start in pages of 8,192, 0.32 GB in pages of 3,276, and was faster).
        """
        import logging

        if not self._ready(collection):
            return
        log = logging.getLogger("pymilvus")
        level = log.level
        log.setLevel(logging.ERROR)  # Milvus Lite warns on every iterator that it has no server timestamp
        try:
            iterator = self.client.query_iterator(collection, batch_size=self._page_rows(collection),
                                                  filter=filter_expr,
                                                  output_fields=["id", "vector", *fields])
            while batch := iterator.next():
                yield from batch
            iterator.close()
        finally:
            log.setLevel(level)

    def _page_rows(self, collection: str) -> int:
        fields = self.client.describe_collection(collection).get("fields", [])
        dim = next((int(f.get("params", {}).get("dim", 0)) for f in fields if f.get("name") == "vector"), 0)
        return max(1024, min(8192, PAGE_BYTES // (32 * max(1, dim))))

    def close(self) -> None:
        """Close the client and, for Milvus Lite, stop its in-process server: it holds an exclusive file lock,
        so another photo-engine process cannot open the same vectors.db until this one lets go."""
        if "client" not in self.__dict__:
            return
        self.client.close()
        del self.__dict__["client"]
        self.__dict__.pop("_loaded", None)
        _OPEN[self.uri] = _OPEN.get(self.uri, 1) - 1
        if _OPEN[self.uri] <= 0 and not self.uri.startswith(("http://", "https://", "tcp://")):
            try:
                from milvus_lite.server_manager import server_manager_instance
            except ImportError:
                return
            server_manager_instance.release_server(self.uri)

    def __enter__(self) -> "VectorStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
