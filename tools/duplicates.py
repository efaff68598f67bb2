"""Near-duplicate files: byte-identical copies, and look-alikes by perceptual hash and image embedding.

Either signal alone misleads: aligned face crops of one person reach embedding cosine 0.96 with 24 bits of
phash apart, and any two flat images share a phash. So a pair counts when one signal is strong and the
other does not disagree (measured on the dev media: the motorcycle stereo pair is phash 4 / cosine 0.95).
With the offline MobileNet vectors a copy cropped 3.3 % per side (phash 10, cosine 0.94 from its pixels) looks
like two photos of one face (0.938 at 10 bits, 0.946 at 16) and is not found; a 2 % crop is (6 bits, 0.96).
Videos have no phash; they are compared by the mean of their keyframe vectors, with other videos only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from sqlmodel import select

from catalog.db import session_for
from catalog.models import Media
from catalog.settings import Library
from catalog.vectors import FRAME_BITS, image_collection
from tools.search import default_models, vector_snapshot, vector_store

AGREE_COSINE = 0.85  # a phash match needs the embeddings at least this close (when both exist)
BLOCK = 2048  # rows per block in the all-pairs scans (memory: BLOCK x n floats)


@dataclass(frozen=True)
class Pair:
    a: int
    b: int
    hamming: int | None
    cosine: float | None


def is_duplicate(hamming: int | None, cosine: float | None, max_hamming: int, min_cosine: float) -> bool:
    """One strong signal, and the other (if known) not disagreeing."""
    by_hash = hamming is not None and hamming <= max_hamming and (cosine is None or cosine >= AGREE_COSINE)
    by_vector = cosine is not None and cosine >= min_cosine and (hamming is None or hamming <= 2 * max_hamming)
    return by_hash or by_vector


def phash_pairs(ids: list[int], hashes: list[str], max_distance: int) -> dict[tuple[int, int], int]:
    """All pairs within `max_distance` bits, blocked numpy popcount (≈1 s per 10^8 pairs on 2 cores)."""
    if len(ids) < 2:
        return {}
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    out: dict[tuple[int, int], int] = {}
    for start in range(0, len(values), BLOCK):
        block = values[start:start + BLOCK]
        distance = np.bitwise_count(block[:, None] ^ values[None, :])
        rows, cols = np.nonzero(distance <= max_distance)
        for r, c in zip(rows.tolist(), cols.tolist()):
            i = start + r
            if c > i:
                out[(ids[i], ids[c])] = int(distance[r, c])
    return out


def cosine_pairs(ids: list[int], vectors: np.ndarray, min_cosine: float) -> dict[tuple[int, int], float]:
    """All pairs of unit vectors with cosine >= min_cosine (blocked matrix product)."""
    out: dict[tuple[int, int], float] = {}
    for start in range(0, len(ids), BLOCK):
        sims = vectors[start:start + BLOCK] @ vectors.T
        rows, cols = np.nonzero(sims >= min_cosine)
        for r, c in zip(rows.tolist(), cols.tolist()):
            i = start + r
            if c > i:
                out[(ids[i], ids[c])] = float(sims[r, c])
    return out


def group_pairs(pairs: list[Pair]) -> list[list[int]]:
    """Connected components (union-find), biggest first."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for pair in pairs:
        parent[root(pair.a)] = root(pair.b)
    groups: dict[int, list[int]] = {}
    for node in list(parent):
        groups.setdefault(root(node), []).append(node)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))


def find_duplicates(library: Library, max_hamming: int = 8, min_cosine: float = 0.95) -> list[dict[str, Any]]:
    """Groups of near-duplicate media: each with its files (largest first: the one to keep) and the evidence."""
    if not 0 <= max_hamming <= 32 or not 0.0 < min_cosine <= 1.0:
        raise ValueError("max_hamming must be 0..32 and min_cosine in (0, 1]")
    with session_for(library.database_url) as session:
        media = {m.id: m for m in session.exec(
            select(Media).where(Media.state == "active", Media.kind.in_(["photo", "video"]))).all()}  # type: ignore[attr-defined]
    vectors = _media_vectors(library, set(media))
    pairs: dict[tuple[int, int], Pair] = {}
    by_hash: dict[str, list[int]] = {}
    for media_id, m in media.items():
        if m.content_hash:
            by_hash.setdefault(m.content_hash, []).append(media_id)
    for same in by_hash.values():
        for other in same[1:]:
            pairs[_key(same[0], other)] = Pair(*_key(same[0], other), 0, 1.0)
    hashed = [(i, m.phash) for i, m in media.items() if m.phash]
    near = phash_pairs([i for i, _ in hashed], [h for _, h in hashed], 2 * max_hamming)
    for kind in ("photo", "video"):
        ids = [i for i in vectors if media[i].kind == kind]
        if len(ids) > 1:
            matrix = np.stack([vectors[i] for i in ids])
            for key, cosine in cosine_pairs(ids, matrix, min_cosine).items():
                key = _key(*key)
                hamming = near.get(key)
                if hamming is None and media[key[0]].phash and media[key[1]].phash:
                    hamming = _hamming(media[key[0]].phash, media[key[1]].phash)
                if is_duplicate(hamming, cosine, max_hamming, min_cosine):
                    pairs.setdefault(key, Pair(*key, hamming, round(cosine, 4)))
    for key, hamming in near.items():
        key = _key(*key)
        both = key[0] in vectors and key[1] in vectors
        cosine = float(vectors[key[0]] @ vectors[key[1]]) if both else None
        if key not in pairs and is_duplicate(hamming, cosine, max_hamming, min_cosine):
            pairs[key] = Pair(*key, hamming, None if cosine is None else round(cosine, 4))
    return [_group_record(group, media, [p for p in pairs.values() if p.a in group])
            for group in group_pairs(list(pairs.values()))]


def _key(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def _hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def _group_record(group: list[int], media: dict[int, Media], pairs: list[Pair]) -> dict[str, Any]:
    members = sorted(group, key=lambda i: (-(media[i].width or 0) * (media[i].height or 0), -media[i].size, i))
    return {
        "media": [{"media_id": i, "path": media[i].path, "kind": media[i].kind,
                   "taken_at": media[i].taken_at.isoformat() if media[i].taken_at else None,
                   "width": media[i].width, "height": media[i].height, "size": media[i].size} for i in members],
        "pairs": [{"a": p.a, "b": p.b, "phash_distance": p.hamming, "cosine": p.cosine} for p in pairs],
    }


def _media_vectors(library: Library, wanted: set[int]) -> dict[int, np.ndarray]:
    """Unit vector per media (photo: its vector; video: normalised mean of its keyframes); {} without vectors."""
    embedder = default_models().image_embedder()
    if embedder is None:
        return {}
    collection = image_collection(embedder.model_id)
    sums: dict[int, np.ndarray] = {}
    try:
        snapshot = vector_snapshot(library, collection)
        rows: Iterator[tuple[int, np.ndarray]] = (
            zip(snapshot.arrays["id"].tolist(), snapshot.vectors) if snapshot is not None else
            ((int(r["id"]), np.asarray(r["vector"], dtype=np.float32))
             for r in vector_store(library).iterate_images(collection, [])))
        for vector_id, vector in rows:
            media_id = vector_id >> FRAME_BITS
            if media_id in wanted:
                vector = np.asarray(vector, dtype=np.float32)
                sums[media_id] = sums[media_id] + vector if media_id in sums else vector
    except Exception:  # noqa: BLE001 - no vector store: perceptual hashes still find duplicates
        return {}
    return {m: v / max(float(np.linalg.norm(v)), 1e-12) for m, v in sums.items()}
