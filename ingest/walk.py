"""Walk a source folder for candidate files, safely: no hidden/system folders, no symlink loops, no FIFOs.

Paths are kept as bytes because a file name need not be valid UTF-8; the catalog stores both the exact bytes
(to open the file) and a printable form (to show it).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Iterator

SYSTEM_FOLDERS = frozenset({
    b"@eadir", b"$recycle.bin", b"system volume information", b"lost+found", b"#recycle", b"#snapshot",
    b"__pycache__", b"node_modules",
})


@dataclass(frozen=True)
class FoundFile:
    """A regular file (or something that poses as one) found under a source."""

    path: bytes
    size: int
    mtime_ns: int
    regular: bool = True
    problem: str | None = None  # why it cannot be read as a file at all (broken link, FIFO, no permission)


def display_path(path: bytes) -> str:
    """A printable, valid-UTF-8 form of an OS path (undecodable bytes become \\xNN escapes)."""
    return path.decode("utf-8", errors="backslashreplace")


def is_hidden_or_system(name: bytes) -> bool:
    return name.startswith(b".") or name.lower() in SYSTEM_FOLDERS


def walk_files(root: bytes, skip_dirs: frozenset[bytes] = frozenset()) -> Iterator[FoundFile]:
    """Yield every non-hidden file under root, following folder symlinks once (a loop is visited once)."""
    seen_dirs: set[tuple[int, int]] = set()
    skip_real = {os.path.realpath(d) for d in skip_dirs}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
        except OSError:
            continue
        key = (info.st_dev, info.st_ino)
        if key in seen_dirs or os.path.realpath(folder) in skip_real:
            continue
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        subfolders = []
        for entry in entries:
            if is_hidden_or_system(entry.name):
                continue
            found = _inspect(entry)
            if found == "dir":
                subfolders.append(entry.path)
            elif found is not None:
                yield found
        stack.extend(reversed(subfolders))


def _inspect(entry: os.DirEntry[bytes]) -> FoundFile | str | None:
    """Classify one directory entry without ever opening it (opening a FIFO would block)."""
    try:
        info = entry.stat(follow_symlinks=True)
    except FileNotFoundError:
        return FoundFile(entry.path, 0, 0, regular=False, problem="broken symbolic link")
    except PermissionError:
        return FoundFile(entry.path, 0, 0, regular=False, problem="permission denied")
    except OSError as error:
        return FoundFile(entry.path, 0, 0, regular=False, problem=f"cannot stat: {error.strerror or error}")
    if stat.S_ISDIR(info.st_mode):
        return "dir"
    if stat.S_ISREG(info.st_mode):
        return FoundFile(entry.path, info.st_size, info.st_mtime_ns)
    return FoundFile(entry.path, 0, info.st_mtime_ns, regular=False,
                     problem="not a regular file (FIFO, socket or device)")
