"""Exact in-process vector search over a memory-mapped snapshot of a local Milvus Lite collection.

Milvus Lite costs ~0.2-0.8 s per FLAT search at 100k vectors on 2 cores, and its HNSW/IVF indexes starve
selective filters (recall@10 0.26-0.35 for "videos of one year"); numpy over the same vectors is exact under
any filter and ~10x faster (benchmarks/SEARCH_RESULTS.md). So a local collection is snapshotted into .npy files
under <library>/cache/vectors (the vectors memory-mapped, the folder named by a fingerprint of the collection's
files, so any write invalidates it) and searched here. Milvus stays the store; a Milvus server (a URI with a
scheme) is searched directly. Ingest refreshes the snapshot after writing vectors, so the first search after an
ingest does not pay for reading the collection back.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from catalog.settings import Library
from catalog.vectors import VectorStore

VECTOR_CACHE_ENV = "PHOTO_ENGINE_VECTOR_CACHE"  # "off": always search through Milvus
CACHE_MAX_ROWS = 2_000_000  # 4 GB of float32 at 512-d: beyond this, Milvus
KIND_CODES = {"photo": 0, "video": 1}
SNAPSHOT_FIELDS = ("id", "media_id", "frame_id", "time", "kind", "taken_ts", "year", "month")
_DTYPES = {"id": np.int64, "media_id": np.int64, "frame_id": np.int64, "time": np.float32, "kind": np.int8,
           "taken_ts": np.int64, "year": np.int32, "month": np.int32}


@dataclass
class VectorSnapshot:
    """One collection as arrays, rows sorted by vector id; `vectors` is (n, dim) float32, memory-mapped."""

    signature: str
    arrays: dict[str, np.ndarray]

    @property
    def vectors(self) -> np.ndarray:
        return self.arrays["vector"]

    def vector_of(self, vector_id: int) -> np.ndarray | None:
        ids = self.arrays["id"]
        row = int(np.searchsorted(ids, vector_id))
        return np.asarray(self.vectors[row], dtype=np.float32) if row < len(ids) and ids[row] == vector_id else None

    def rows_where(self, kind: str | None = None, year: int | None = None, month: int | None = None,
                   ts_from: int | None = None, ts_to: int | None = None, allowed: np.ndarray | None = None,
                   exclude: set[int] | frozenset[int] = frozenset()) -> np.ndarray | None:
        """Boolean mask of rows passing validated filter values (None: every row passes).

        `ts_from`/`ts_to` bound the wall-clock taken time (rows with no date never pass a date bound);
        `allowed` is the media ids a catalog-side filter kept; `exclude` media ids are left out.
        """
        a, masks = self.arrays, []
        if kind is not None:
            masks.append(a["kind"] == KIND_CODES[kind])
        if year is not None:
            masks.append(a["year"] == year)
        if month is not None:
            masks.append(a["month"] == month)
        if ts_from is not None or ts_to is not None:
            masks.append(a["taken_ts"] != 0)
        if ts_from is not None:
            masks.append(a["taken_ts"] >= ts_from)
        if ts_to is not None:
            masks.append(a["taken_ts"] < ts_to)
        if allowed is not None:
            masks.append(np.isin(a["media_id"], allowed))
        if exclude:
            masks.append(~np.isin(a["media_id"], np.fromiter(exclude, dtype=np.int64)))
        if not masks:
            return None
        out = masks[0]
        for more in masks[1:]:
            out = out & more
        return out

    def search(self, vector: np.ndarray, mask: np.ndarray | None, want: int) -> dict[int, dict[str, Any]]:
        """Exact cosine search: the best vector of each of the `want` best media (fewer only if fewer match)."""
        query = np.asarray(vector, dtype=np.float32)
        if mask is None:
            rows, scores = None, self.vectors @ query
        elif mask.mean() > 0.25:  # most rows pass: one full product, then hide the rest
            rows, scores = None, np.where(mask, self.vectors @ query, -np.inf)
        else:
            rows = np.flatnonzero(mask)
            scores = self.vectors[rows] @ query if len(rows) else np.zeros(0, dtype=np.float32)
        valid = int(np.isfinite(scores).sum()) if rows is None and mask is not None else len(scores)
        media_ids, take = self.arrays["media_id"], min(valid, max(want * 8, 64))
        while True:
            top = np.argpartition(-scores, take - 1)[:take] if 0 < take < len(scores) else np.arange(take)
            top = top[np.argsort(-scores[top], kind="stable")]
            best: dict[int, dict[str, Any]] = {}
            for j in top.tolist():
                row = int(rows[j]) if rows is not None else j
                media_id = int(media_ids[row])
                if media_id not in best:
                    best[media_id] = {"media_id": media_id, "frame_id": int(self.arrays["frame_id"][row]),
                                      "time": float(self.arrays["time"][row]),
                                      "kind": "video" if self.arrays["kind"][row] == 1 else "photo",
                                      "score": float(scores[j])}
                    if len(best) == want:
                        return best
            if take >= valid:
                return best
            take = min(valid, take * 4)


_SNAPSHOTS: dict[tuple[str, str], VectorSnapshot] = {}


def snapshots_enabled(library: Library) -> bool:
    """Only for a local Milvus Lite file, and not when $PHOTO_ENGINE_VECTOR_CACHE is off."""
    return "://" not in library.milvus_uri and \
        os.environ.get(VECTOR_CACHE_ENV, "").lower() not in ("off", "0", "no", "false")


def collection_signature(library: Library, collection: str) -> str | None:
    """A fingerprint of a local Milvus Lite collection's files; None for a Milvus server or no collection."""
    if not snapshots_enabled(library):
        return None
    folder = Path(library.milvus_uri) / "collections" / collection
    if not folder.is_dir():
        return None
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "indexes" not in path.relative_to(folder).parts:  # index files are rebuilt on load
            stat = path.stat()
            entries.append(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha1("\n".join(entries).encode()).hexdigest()[:16]


def _folder(library: Library, collection: str, signature: str) -> Path:
    return library.root / "cache" / "vectors" / f"{collection}-{signature}"


def cached_snapshot(library: Library, collection: str, signature: str) -> VectorSnapshot | None:
    """The snapshot already open in this process, if it still matches the collection's files."""
    snapshot = _SNAPSHOTS.get((library.milvus_uri, collection))
    return snapshot if snapshot is not None and snapshot.signature == signature else None


def clear_cache() -> None:
    """Forget the open snapshots (tests and benchmarks measure a cold start with this)."""
    _SNAPSHOTS.clear()


def vector_snapshot(library: Library, collection: str, store: VectorStore | None = None) -> VectorSnapshot | None:
    """The collection as memory-mapped arrays (refreshed when the collection changes), or None to use Milvus.

    `store`, when given, is used for a refresh and closed afterwards (see `refresh_vector_snapshot`).
    """
    signature = collection_signature(library, collection)
    if signature is None:
        if store is not None:
            store.close()
        return None
    if (cached := cached_snapshot(library, collection, signature)) is not None:
        if store is not None:
            store.close()
        return cached
    folder = _folder(library, collection, signature)
    if not (folder / "vector.npy").is_file():
        if not refresh_vector_snapshot(library, collection, folder, store=store):
            return None
    elif store is not None:
        store.close()
    snapshot = _load(folder, signature)
    if snapshot is not None:
        _SNAPSHOTS[(library.milvus_uri, collection)] = snapshot
    return snapshot


def _load(folder: Path, signature: str) -> VectorSnapshot | None:
    try:
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r" if name == "vector" else None)
                  for name in (*SNAPSHOT_FIELDS, "vector")}
    except (OSError, ValueError):
        return None
    return VectorSnapshot(signature, arrays)


def refresh_vector_snapshot(library: Library, collection: str, folder: Path | None = None, full: bool = False,
                            store: VectorStore | None = None) -> bool:
    """Bring the snapshot up to date with Milvus (ingest calls this after writing vectors); False if none.

    Reading rows out of Milvus Lite is slow (~1.5k rows/s on 2 cores), so unless `full`, only rows of media
    newer than the previous snapshot are read (media ids only grow) and the result is accepted when the row
    count then matches Milvus'; deletions or re-embedded files make the counts differ and force a full re-read.
    The Milvus client (`store`, or one opened here) is closed afterwards: an open Milvus Lite collection holds
    ~0.5-1 GB that searching the snapshot does not need.
    """
    if not snapshots_enabled(library):
        if store is not None:
            store.close()
        return False
    store = store or VectorStore(library.milvus_uri)
    try:
        if folder is None:
            store.close()  # Milvus Lite writes its files on close: fingerprint what is on disk
            signature = collection_signature(library, collection)
            if signature is None:
                return False
            folder = _folder(library, collection, signature)
            if (folder / "vector.npy").is_file():
                return True
        previous = None if full else _latest(folder.parent, collection)
        arrays = _read_rows(store, collection, previous)
    finally:
        store.close()
    if arrays is None:
        return False
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, values in arrays.items():
        np.save(tmp / f"{name}.npy", values)
    del arrays, previous
    for old in folder.parent.glob(f"{collection}-*"):
        if old != tmp:
            shutil.rmtree(old, ignore_errors=True)
    tmp.rename(folder)
    return True


def _latest(parent: Path, collection: str) -> VectorSnapshot | None:
    candidates = sorted((p for p in parent.glob(f"{collection}-*") if not p.name.endswith(".tmp")),
                        key=lambda p: p.stat().st_mtime_ns)
    return _load(candidates[-1], "") if candidates else None


def _read_rows(store: VectorStore, collection: str, previous: VectorSnapshot | None) -> dict[str, np.ndarray] | None:
    """All rows (or only rows newer than `previous`, merged into it) as arrays sorted by vector id."""
    expr = ""
    if previous is not None and len(previous.arrays["id"]):
        expr = f"media_id > {int(previous.arrays['media_id'].max())}"
    scalars: dict[str, list[Any]] = {name: [] for name in SNAPSHOT_FIELDS}
    vectors: list[np.ndarray] = []
    for row in store.iterate_images(collection, list(SNAPSHOT_FIELDS[1:]), expr):
        for name in SNAPSHOT_FIELDS:
            scalars[name].append(KIND_CODES.get(row[name], 2) if name == "kind" else row[name])
        vectors.append(np.asarray(row["vector"], dtype=np.float32))
        if len(vectors) > CACHE_MAX_ROWS:
            return None
    fresh = {name: np.asarray(values, dtype=_DTYPES[name]) for name, values in scalars.items()}
    dim = previous.vectors.shape[1] if previous is not None else (len(vectors[0]) if vectors else 0)
    fresh["vector"] = np.stack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)
    if expr:
        merged = {name: np.concatenate([np.asarray(previous.arrays[name]), fresh[name]])  # type: ignore[union-attr]
                  for name in fresh}
        if len(merged["id"]) != store.count(collection) or len(np.unique(merged["id"])) != len(merged["id"]):
            return _read_rows(store, collection, None)  # something else changed: read everything
        fresh = merged
    if not len(fresh["id"]):
        return None
    order = np.argsort(fresh["id"], kind="stable")
    return {name: np.ascontiguousarray(values[order]) for name, values in fresh.items()}
