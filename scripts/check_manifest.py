"""Compare a library built from ../shared/media with its manifest: kinds, dates, GPS places, keyframes.

Usage: python scripts/check_manifest.py MEDIA_DIR LIBRARY_DIR   (a developer check, not a test: tests never
read ../shared). Prints one line per mismatch and a summary.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

from catalog.settings import Library
from tools.library import media_info


def expected(metadata: str) -> dict[str, str]:
    return dict(part.strip().split("=", 1) for part in metadata.split(";") if "=" in part)


def main(media_dir: str, library_dir: str) -> int:
    library = Library.at(library_dir)
    problems = checked = 0
    for row in csv.DictReader(open(Path(media_dir) / "manifest.csv")):
        info = media_info(library, str(Path(media_dir).resolve() / row["file"]))
        checked += 1
        if info is None:
            print(f"MISSING {row['file']}")
            problems += 1
            continue
        want = expected(row["metadata"])
        kind = "video" if row["kind"] == "videos" else "photo"
        notes = []
        if info["kind"] != kind:
            notes.append(f"kind {info['kind']} != {kind}")
        if "date" in want:
            date = re.sub(r"^(\d{4}):(\d\d):(\d\d)", r"\1-\2-\3", want["date"]).replace(" ", "T")[:16]
            if not (info["taken_at"] or "").startswith(date):
                notes.append(f"taken_at {info['taken_at']} ({info['taken_at_source']}) != {want['date']}")
        if "gps" in want:
            lat, lon = (float(v) for v in want["gps"].split(",")[:2])
            if info["lat"] is None or abs(info["lat"] - lat) > 1e-3 or abs(info["lon"] - lon) > 1e-3:
                notes.append(f"gps {info['lat']},{info['lon']} != {lat},{lon}")
            elif not info["place"]:
                notes.append("no place name")
        if kind == "video" and not info["frames"]:
            notes.append("no keyframes")
        if notes:
            problems += 1
            print(f"{row['file']}: " + "; ".join(notes))
    print(f"{checked} files checked, {problems} with differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
