"""Content hashes: the identity of a file's bytes, so a moved or renamed file is recognised, not re-analysed."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

CHUNK = 1 << 20


def content_hash(path: bytes | str) -> str:
    """BLAKE2b-128 of the whole file (hashlib releases the GIL, so threads hash in parallel)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_many(paths: Iterable[bytes], workers: int) -> Iterator[tuple[bytes, str | None, str | None]]:
    """(path, hash, error) for each path, in order, hashing `workers` files at a time."""

    def one(path: bytes) -> tuple[bytes, str | None, str | None]:
        try:
            return path, content_hash(path), None
        except PermissionError:
            return path, None, "permission denied"
        except OSError as error:
            return path, None, f"cannot read: {error.strerror or error}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        yield from pool.map(one, paths)
