"""Representative frames of a video: its keyframes, decoded in-process with PyAV, deduplicated.

Only keyframes are decoded (the decoder skips everything else), which is an order of magnitude cheaper than
decoding every frame and gives natural scene anchors. Near-identical and black/blank keyframes are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from ingest.media import DecodeError

SIGNATURE_SIDE = 32  # frames are compared as 32x32 thumbnails (grayscale for scene change)
DARK_LUMA = 12.0  # mean luma (0..255) below which a frame counts as black
FLAT_STD = 3.0  # per-channel standard deviation below which a frame counts as a blank/uniform card
FALLBACK_SCAN_SECONDS = 15.0  # how far a full decode looks for a non-blank frame when keyframes are all blank
FALLBACK_SCAN_FRAMES = 600  # ... and at most this many frames (high-frame-rate clips)


@dataclass
class Keyframe:
    """One kept frame: seconds from stream start, upright RGB image, difference vs the previous kept frame."""

    time: float
    image: Image.Image
    scene_change: float


@dataclass
class _Candidate:
    time: float
    signature: np.ndarray = field(repr=False)
    image: Image.Image = field(repr=False)
    scene_change: float = 1.0


def extract_keyframes(path: str, max_frames: int = 24, max_side: int = 1280, min_change: float = 0.06,
                      skip_dark: bool = True) -> list[Keyframe]:
    """Distinct, non-blank keyframes of the first video stream, at most `max_frames`, evenly spread.

    Always returns at least one frame for a decodable video; raises DecodeError when there is no video stream
    or nothing can be decoded.
    """
    max_frames = max(1, max_frames)
    try:
        kept, blank = _scan_keyframes(path, max_frames, max_side, min_change, skip_dark)
        if not kept:
            first = _first_frame(path, max_side, want_content=skip_dark)
            kept = [first] if first is not None else ([blank] if blank is not None else [])
    except DecodeError:
        raise
    except MemoryError as error:
        raise DecodeError("cannot decode video: out of memory") from error
    except Exception as error:  # noqa: BLE001 - any decoder/conversion failure becomes a clear DecodeError
        raise DecodeError(f"cannot decode video: {_reason(error)}") from error
    if not kept:
        raise DecodeError("cannot decode video: no decodable frame")
    return [Keyframe(c.time, c.image, c.scene_change) for c in _spread(kept, max_frames)]


# --- decoding -------------------------------------------------------------------------------------------------

def _open(path: str) -> av.container.InputContainer:
    try:
        return av.open(path, mode="r")
    except av.FFmpegError as error:
        raise DecodeError(f"cannot open video: {_reason(error)}") from error
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise DecodeError(f"cannot open video: {error}") from error


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The first real video stream (cover art attached to audio files is only a last resort)."""
    streams = list(container.streams.video)
    if not streams:
        raise DecodeError("no video stream (audio-only or not a video)")
    real = [s for s in streams if not (s.disposition & av.stream.Disposition.attached_pic)]
    return (real or streams)[0]


def _frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
    """Decoded frames until the end or the first unrecoverable error (truncated files keep what decoded)."""
    try:
        yield from container.decode(stream)
    except (av.FFmpegError, OSError, ValueError):
        return


def _scan_keyframes(path: str, max_frames: int, max_side: int, min_change: float,
                    skip_dark: bool) -> tuple[list[_Candidate], _Candidate | None]:
    """Keyframe-only pass: (distinct non-blank candidates, first blank frame in case nothing else exists)."""
    kept: list[_Candidate] = []
    blank: _Candidate | None = None
    with _open(path) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        stream.codec_context.skip_frame = "NONKEY"
        scaler = _Scaler(stream, max_side)
        for frame in _frames(container, stream):
            if not (frame.key_frame or frame.pict_type == av.video.frame.PictureType.I):
                continue  # a decoder that ignores skip_frame must not turn every frame into a candidate
            signature = scaler.signature(frame)
            if skip_dark and _is_blank(signature):
                if blank is None:
                    blank = scaler.candidate(frame, signature)
                continue
            change = 1.0 if not kept else _difference(signature, kept[-1].signature)
            if kept and change < min_change:
                continue
            kept.append(scaler.candidate(frame, signature, change))
            if len(kept) >= 2 * max_frames + 2:
                kept = kept[::2]  # thin as we go: bounded memory on long videos, still evenly spread
    return kept, blank


def _first_frame(path: str, max_side: int, want_content: bool) -> _Candidate | None:
    """Full decode from the start: the first non-blank frame within a short window, else the first frame."""
    first: _Candidate | None = None
    with _open(path) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        stream.codec_context.skip_frame = "DEFAULT"
        scaler = _Scaler(stream, max_side)
        for count, frame in enumerate(_frames(container, stream)):
            signature = scaler.signature(frame)
            if not want_content or not _is_blank(signature):
                return scaler.candidate(frame, signature)
            if first is None:
                first = scaler.candidate(frame, signature)
            if count >= FALLBACK_SCAN_FRAMES or _frame_time(frame, scaler.start) - first.time > FALLBACK_SCAN_SECONDS:
                break
    return first


def _stream_start(stream: av.video.stream.VideoStream) -> float | None:
    if stream.start_time is None or stream.time_base is None:
        return None
    return float(stream.start_time * stream.time_base)


def _frame_time(frame: av.VideoFrame, start: float | None) -> float:
    if frame.time is None:
        return 0.0
    return max(0.0, frame.time - (start or 0.0))


# --- frame analysis -------------------------------------------------------------------------------------------

class _Scaler:
    """Turns one stream's decoded frames into signatures and upright images.

    Why a class: `VideoFrame.reformat()` builds a new swscale context on every call (~3 ms at 1080p); one
    `VideoReformatter` per target size keeps its context, which halves the conversion cost per keyframe.
    """

    def __init__(self, stream: av.video.stream.VideoStream, max_side: int) -> None:
        self.stream = stream
        self.max_side = max_side
        self.start = _stream_start(stream)
        self._to_signature = VideoReformatter()
        self._to_picture = VideoReformatter()

    def signature(self, frame: av.VideoFrame) -> np.ndarray:
        """32x32x3 RGB as float32 0..255 (via RGB so that limited-range video black really is 0)."""
        small = self._to_signature.reformat(frame, width=SIGNATURE_SIDE, height=SIGNATURE_SIDE, format="rgb24",
                                            interpolation="AREA")
        return small.to_ndarray().astype(np.float32)

    def candidate(self, frame: av.VideoFrame, signature: np.ndarray, change: float = 1.0) -> _Candidate:
        return _Candidate(_frame_time(frame, self.start), signature, self.upright_image(frame), change)

    def upright_image(self, frame: av.VideoFrame) -> Image.Image:
        """Scale in swscale (cheap) to the display aspect, then apply the display-matrix rotation."""
        width, height = _display_size(frame, self.stream)
        scale = min(1.0, self.max_side / max(width, height)) if self.max_side > 0 else 1.0
        out_w, out_h = max(2, round(width * scale)), max(2, round(height * scale))
        scaled = self._to_picture.reformat(frame, width=out_w, height=out_h, format="rgb24", interpolation="AREA")
        image = Image.fromarray(scaled.to_ndarray())  # ~3x cheaper than VideoFrame.to_image()'s row-by-row copy
        return _rotate(image, _rotation(frame))


def _luma(signature: np.ndarray) -> np.ndarray:
    return signature @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _is_blank(signature: np.ndarray) -> bool:
    """Near-black, or one flat colour (per-channel spread, so a red/green split of equal luma is not blank)."""
    if float(_luma(signature).mean()) < DARK_LUMA:
        return True
    return float(signature.reshape(-1, 3).std(axis=0).max()) < FLAT_STD


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute grayscale difference, 0..1."""
    return float(np.abs(_luma(a) - _luma(b)).mean() / 255.0)


def _display_size(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> tuple[int, int]:
    """Stored size corrected for non-square pixels (DV, some broadcast/AVCHD recordings)."""
    sar = stream.codec_context.sample_aspect_ratio or stream.sample_aspect_ratio
    if sar and Fraction(sar) > 0 and Fraction(sar) != 1:
        return round(frame.width * float(sar)), frame.height
    return frame.width, frame.height


def _rotation(frame: av.VideoFrame) -> int:
    try:
        return int(round(frame.rotation or 0))
    except (AttributeError, TypeError, ValueError):
        return 0


def _rotate(image: Image.Image, degrees_ccw: int) -> Image.Image:
    turn = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
            270: Image.Transpose.ROTATE_270}.get(round(degrees_ccw / 90) * 90 % 360)
    return image.transpose(turn) if turn is not None else image


def _spread(kept: list[_Candidate], max_frames: int) -> list[_Candidate]:
    """An evenly spread subset of at most max_frames, always including the first."""
    if len(kept) <= max_frames:
        return kept
    if max_frames == 1:
        return kept[:1]
    step = (len(kept) - 1) / (max_frames - 1)
    return [kept[round(i * step)] for i in range(max_frames)]


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return text.strip() or type(error).__name__
