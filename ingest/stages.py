"""Which stages a file of each kind goes through, in order.

`extract` reads a file once for its metadata, thumbnails and (for videos) keyframes; analyzer stages that
run on those derived images are appended here as they are enabled.
"""

from __future__ import annotations

SCAN_STAGE = "scan"  # only ever recorded as failed: the file could not be recognised as a photo or video
EXTRACT_STAGE = "extract"

_STAGES: dict[str, list[str]] = {
    "photo": [EXTRACT_STAGE],
    "video": [EXTRACT_STAGE],
}


def stages_for(kind: str) -> list[str]:
    """Stages a file of this kind needs; unknown kinds need none."""
    return list(_STAGES.get(kind, []))
