"""Capture metadata (date, place, camera, display size, video stream facts) for photos and videos.

Readers never modify the source and never decode pixels when they can avoid it. Bad or odd metadata is
normal in real libraries, so a field that cannot be understood is simply left None; only a file that
cannot be read as the requested kind at all raises `MetadataError`.

Photos: Pillow (+ pillow-heif for HEIC/HEIF/AVIF) reads EXIF/XMP without decoding; RAW formats go through
exifread (tags) and rawpy/LibRaw (sensor size and rotation), which is also the fallback whenever Pillow
cannot open a file. Videos: PyAV (FFmpeg) container and stream metadata.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

__all__ = [
    "MediaMetadata",
    "MetadataError",
    "RAW_EXTENSIONS",
    "apply_file_time_fallback",
    "normalize_offset",
    "parse_datetime",
    "parse_gps_coordinate",
    "parse_iso6709",
    "read_photo_metadata",
    "read_video_metadata",
]

# Camera RAW formats: Pillow either cannot open these or only sees a small embedded preview.
RAW_EXTENSIONS = frozenset({
    ".3fr", ".ari", ".arw", ".bay", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".fff", ".gpr", ".iiq",
    ".k25", ".kdc", ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf", ".pef", ".ptx", ".raf", ".raw", ".rw2",
    ".rwl", ".sr2", ".srf", ".srw", ".x3f",
})

# EXIF tag ids (TIFF/EXIF 2.32).
_MAKE, _MODEL, _ORIENTATION, _DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
_DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 0x9003, 0x9004
_OFFSET_TIME, _OFFSET_TIME_ORIGINAL, _OFFSET_TIME_DIGITIZED = 0x9010, 0x9011, 0x9012
_XMP_TAG = 0x02BC
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4

# Orientations 5..8 turn the stored image by 90 degrees, so its display width and height swap.
_ROTATED_ORIENTATIONS = frozenset({5, 6, 7, 8})

# Years outside this range are clock garbage (or the 0000:00:00 "unset" value), not capture dates.
_MIN_YEAR, _MAX_YEAR = 1800, 2200


class MetadataError(Exception):
    """The file cannot be read as the requested kind (photo/video) at all; the message says why."""


@dataclass
class MediaMetadata:
    """What the catalog needs to know about one photo or video; every field is optional."""

    taken_at: datetime | None = None  # naive: the camera's wall-clock time
    taken_at_offset: str | None = None  # "+02:00" when the file records it
    taken_at_source: str | None = None  # which tag the date came from, e.g. "exif:DateTimeOriginal"
    lat: float | None = None
    lon: float | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    orientation: int | None = None  # EXIF orientation 1..8
    width: int | None = None  # display size, i.e. after applying the orientation/rotation
    height: int | None = None
    duration: float | None = None  # seconds (videos)
    fps: float | None = None
    video_codec: str | None = None

    @property
    def camera(self) -> str | None:
        """"Make Model" without repeating the brand: ("Canon", "Canon PowerShot S40") -> "Canon PowerShot S40"."""
        make, model = self.camera_make, self.camera_model
        if not make or not model:
            return model or make or None
        if model.lower().startswith(make.lower()):
            return model
        # "NIKON CORPORATION" + "NIKON D2H" -> "NIKON D2H": the brand is already in the model name.
        if model.split()[0].lower() == make.split()[0].lower():
            return model
        return f"{make} {model}"


# --------------------------------------------------------------------------------------------------
# Small pure parsers (shared by the Pillow, exifread and PyAV readers)
# --------------------------------------------------------------------------------------------------

def clean_text(value: Any) -> str | None:
    """A tag value as a stripped string (no NULs/padding), or None when empty or not text-like."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    elif not isinstance(value, str):
        return None
    text = value.replace("\x00", " ").strip()
    return text or None


_OFFSET_RE = re.compile(r"^(?:(Z)|([+-])(\d{1,2})(?::?(\d{2}))?)$", re.IGNORECASE)


def normalize_offset(value: Any) -> str | None:
    """UTC offset as "+HH:MM" from "+02:00", "+0200", "-04", "Z"; None when absent or implausible."""
    text = clean_text(value)
    if text is None:
        return None
    match = _OFFSET_RE.match(text)
    if not match:
        return None
    if match.group(1):
        return "+00:00"
    hours, minutes = int(match.group(3)), int(match.group(4) or 0)
    if hours > 14 or minutes >= 60:
        return None
    return f"{match.group(2)}{hours:02d}:{minutes:02d}"


_DATETIME_RE = re.compile(
    r"^(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})"  # date, EXIF "2003:11:23" or ISO "2003-11-23"
    r"(?:[T\s]+(\d{1,2})[:.](\d{1,2})(?:[:.](\d{1,2}))?(?:[.,]\d+)?)?"  # time, seconds and fraction optional
    r"\s*(Z|[+-]\d{1,2}(?::?\d{2})?)?$",  # trailing UTC offset, optional
    re.IGNORECASE,
)


def parse_datetime(value: Any) -> tuple[datetime | None, str | None]:
    """(naive wall-clock datetime, "+HH:MM" offset or None) from an EXIF/XMP/QuickTime date string.

    Tolerates ISO separators, missing seconds, fractions, padding and a trailing offset; returns
    (None, None) for the all-zero "unset" value, impossible dates and garbage instead of raising.
    """
    text = clean_text(value)
    if text is None:
        return None, None
    match = _DATETIME_RE.match(text)
    if not match:
        return None, None
    year, month, day, hour, minute, second = (int(part or 0) for part in match.groups()[:6])
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        return None, None
    try:
        taken = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None, None
    return taken, normalize_offset(match.group(7))


def _to_float(value: Any) -> float | None:
    """A number from an int/float/Fraction/IFDRational/(num, den) pair/numeric string; None if unusable."""
    try:
        if isinstance(value, (tuple, list)) and len(value) == 2:  # old-style (numerator, denominator)
            numerator, denominator = float(value[0]), float(value[1])
            result = numerator / denominator if denominator else math.nan
        elif hasattr(value, "numerator") and hasattr(value, "denominator") and not isinstance(value, (int, float)):
            result = float(value.numerator) / value.denominator if value.denominator else math.nan
        elif isinstance(value, (bytes, bytearray, str)):
            text = clean_text(value) or ""
            if "/" in text:
                numerator_text, denominator_text = text.split("/", 1)
                denominator = float(denominator_text)
                result = float(numerator_text) / denominator if denominator else math.nan
            else:
                result = float(text)
        else:
            result = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, AttributeError):
        return None
    return None if math.isnan(result) or math.isinf(result) else result


_NUMBER_RE = re.compile(r"[-+]?\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)?")


def _degree_parts(value: Any) -> list[Any]:
    """Degrees/minutes/seconds parts of a GPS value stored as rationals, a number or a string."""
    if isinstance(value, (bytes, bytearray, str)):
        # Some phones store "52,00000,50,00000,34,01180"; like exiftool and goexif, the first three
        # numbers are taken as degrees, minutes, seconds.
        return _NUMBER_RE.findall(clean_text(value) or "")[:3]
    if isinstance(value, (tuple, list)):
        return list(value)[:3]
    return [value]


def parse_gps_coordinate(value: Any, ref: Any, limit: float) -> float | None:
    """Signed decimal degrees from an EXIF GPS value and its N/S/E/W ref; None for garbage or out of range.

    A zero-denominator minute/second counts as 0 (cameras write 0/0 for "unknown"); degrees must be valid.
    """
    parts = _degree_parts(value)
    if not parts:
        return None
    numbers = [_to_float(part) for part in parts]
    if numbers[0] is None:
        return None
    degrees = abs(numbers[0]) + sum((number or 0.0) / scale for number, scale in zip(numbers[1:], (60.0, 3600.0)))
    ref_text = (clean_text(ref) or "").upper()[:1]
    negative = ref_text in ("S", "W") or (ref_text not in ("N", "E") and numbers[0] < 0)
    result = -degrees if negative else degrees
    return result if abs(result) <= limit else None


_ISO6709_RE = re.compile(r"^\s*([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")


def _iso6709_part(text: str, degree_digits: int) -> float:
    """One ISO 6709 coordinate: ±DD.D, ±DDMM.M or ±DDDMMSS.S depending on the integer digit count."""
    sign = -1.0 if text.startswith("-") else 1.0
    unsigned = text[1:]
    integer = unsigned.split(".")[0]
    fraction = unsigned[len(integer):]
    if len(integer) <= degree_digits:
        value = float(unsigned)
    elif len(integer) <= degree_digits + 2:
        value = float(integer[:degree_digits]) + float(integer[degree_digits:] + fraction) / 60.0
    else:
        value = (float(integer[:degree_digits]) + float(integer[degree_digits:degree_digits + 2]) / 60.0
                 + float(integer[degree_digits + 2:] + fraction) / 3600.0)
    return sign * value


def parse_iso6709(value: Any) -> tuple[float, float] | None:
    """(lat, lon) from an ISO 6709 string as QuickTime/MP4 store it, e.g. "+50.8798+004.7005+012.000/"."""
    text = clean_text(value)
    match = _ISO6709_RE.match(text or "")
    if not match:
        return None
    try:
        lat, lon = _iso6709_part(match.group(1), 2), _iso6709_part(match.group(2), 3)
    except ValueError:
        return None
    return _valid_position(lat, lon)


def _valid_position(lat: float | None, lon: float | None) -> tuple[float, float] | None:
    """The pair when it is a real position; exactly (0, 0) is the usual "no fix" placeholder."""
    if lat is None or lon is None or math.isnan(lat) or math.isnan(lon):
        return None
    if abs(lat) > 90 or abs(lon) > 180 or (lat == 0 and lon == 0):
        return None
    return lat, lon


def parse_orientation(value: Any) -> int | None:
    """EXIF orientation 1..8, or None when absent or out of range."""
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    number = _to_float(value)
    if number is None or number != int(number) or not 1 <= int(number) <= 8:
        return None
    return int(number)


def _positive_int(value: Any) -> int | None:
    number = _to_float(value)
    return int(number) if number is not None and number >= 1 else None


def _display_size(width: int | None, height: int | None, rotated: bool) -> tuple[int | None, int | None]:
    return (height, width) if rotated else (width, height)


# --------------------------------------------------------------------------------------------------
# Tags -> metadata (format-independent part of photo reading)
# --------------------------------------------------------------------------------------------------

# Readers map their own tag representation onto canonical EXIF names (Make, Model, Orientation,
# DateTimeOriginal, ..., GPSLatitude, GPSLatitudeRef, ...) so that one function interprets them.

# (date tag, its own offset tag). DateTime is the *modification* time, hence last and after XMP dates.
_EXIF_CAPTURE_DATES = (("DateTimeOriginal", "OffsetTimeOriginal"), ("DateTimeDigitized", "OffsetTimeDigitized"))
_EXIF_MODIFY_DATE = ("DateTime", "OffsetTime")
_OFFSET_TAGS = ("OffsetTimeOriginal", "OffsetTimeDigitized", "OffsetTime")


def _exif_date(tags: Mapping[str, Any], date_tag: str, offset_tag: str) -> tuple[datetime, str | None] | None:
    taken, offset = parse_datetime(tags.get(date_tag))
    if taken is None:
        return None
    if offset is None:  # prefer the matching offset tag, else any other one the camera wrote
        for name in (offset_tag, *_OFFSET_TAGS):
            offset = normalize_offset(tags.get(name))
            if offset:
                break
    return taken, offset


def _choose_date(tags: Mapping[str, Any], xmp: str | None) -> tuple[datetime, str | None, str] | None:
    """Best capture date: EXIF original > EXIF digitized > XMP capture dates > EXIF DateTime (last edit)."""
    for date_tag, offset_tag in _EXIF_CAPTURE_DATES:
        found = _exif_date(tags, date_tag, offset_tag)
        if found:
            return found[0], found[1], f"exif:{date_tag}"
    for name in _XMP_DATE_NAMES:
        taken, offset = parse_datetime(_xmp_value(xmp, name))
        if taken is not None:
            return taken, offset, f"xmp:{name}"
    found = _exif_date(tags, *_EXIF_MODIFY_DATE)
    if found:
        return found[0], found[1], f"exif:{_EXIF_MODIFY_DATE[0]}"
    return None


def _meta_from_tags(tags: Mapping[str, Any], xmp: str | None) -> MediaMetadata:
    """Everything except the pixel size, from canonical EXIF tags plus the raw XMP packet as fallback."""
    meta = MediaMetadata()
    date = _choose_date(tags, xmp)
    if date:
        meta.taken_at, meta.taken_at_offset, meta.taken_at_source = date
    meta.camera_make = clean_text(tags.get("Make")) or clean_text(_xmp_value(xmp, "Make"))
    meta.camera_model = clean_text(tags.get("Model")) or clean_text(_xmp_value(xmp, "Model"))
    meta.orientation = parse_orientation(tags.get("Orientation"))
    position = _valid_position(parse_gps_coordinate(tags.get("GPSLatitude"), tags.get("GPSLatitudeRef"), 90),
                               parse_gps_coordinate(tags.get("GPSLongitude"), tags.get("GPSLongitudeRef"), 180))
    if position is None:
        position = _valid_position(_xmp_gps(_xmp_value(xmp, "GPSLatitude"), 90),
                                   _xmp_gps(_xmp_value(xmp, "GPSLongitude"), 180))
    if position:
        meta.lat, meta.lon = position
    return meta


# --------------------------------------------------------------------------------------------------
# XMP (regex on the raw packet: Pillow's getxmp() needs defusedxml, and we only want a few values)
# --------------------------------------------------------------------------------------------------

_XMP_DATE_NAMES = ("DateTimeOriginal", "CreateDate", "DateCreated")  # the order exiftool reports them


def _xmp_text(raw: Any) -> str | None:
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).decode("utf-8", errors="replace")
    if isinstance(raw, tuple):  # Pillow returns some TIFF byte tags as tuples of ints
        try:
            return bytes(raw).decode("utf-8", errors="replace")
        except (TypeError, ValueError):
            return None
    return raw if isinstance(raw, str) else None


def _xmp_value(xmp: str | None, name: str) -> str | None:
    """First value of a property by local name (any prefix, e.g. xmp:/xap:), attribute or element form."""
    if not xmp:
        return None
    attribute = re.search(rf"""[\w.-]+:{name}\s*=\s*(["'])(.*?)\1""", xmp, re.DOTALL)
    if attribute:
        return attribute.group(2)
    element = re.search(rf"<[\w.-]+:{name}(?:\s[^>]*)?>\s*([^<]*?)\s*</", xmp)
    return element.group(1) if element else None


_XMP_GPS_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?(?:,(\d+(?:\.\d+)?))?\s*([NSEW])\s*$", re.I)


def _xmp_gps(value: str | None, limit: float) -> float | None:
    """XMP GPS coordinate "DDD,MM.mmk" or "DDD,MM,SSk" (k = N/S/E/W) as signed degrees."""
    match = _XMP_GPS_RE.match(value or "")
    if not match:
        return None
    parts = [part for part in match.groups()[:3] if part is not None]
    return parse_gps_coordinate(parts, match.group(4), limit)


# --------------------------------------------------------------------------------------------------
# Photo readers
# --------------------------------------------------------------------------------------------------

_heif_registered = False


def _register_heif() -> None:
    """Teach Pillow HEIC/HEIF/AVIF once per process (pillow-heif applies irot/imir on open)."""
    global _heif_registered
    if _heif_registered:
        return
    _heif_registered = True
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except Exception:  # without pillow-heif, HEIC simply falls back to exifread
        pass


def _safe(read: Callable[[], Any]) -> Any:
    """Run one metadata accessor; corrupt metadata in one place must not lose the other fields."""
    try:
        return read()
    except Exception:
        return None


def _exif_without_decoding(img: Any) -> Any:
    """img.getexif(), except that for PNG it does not decode the whole image.

    Pillow's PNG getexif() loads all pixels to look for an eXIf chunk *after* the image data; writers put
    it before (where the base implementation finds it in img.info), so skip that rare case for speed.
    """
    from PIL import Image

    if img.format == "PNG":
        return Image.Image.getexif(img)
    return img.getexif()


def _pillow_tags(img: Any) -> dict[str, Any]:
    """Canonical tags from Pillow's EXIF: IFD0, the Exif sub-IFD and the GPS sub-IFD."""
    exif = _safe(lambda: _exif_without_decoding(img)) or {}
    exif_ifd = _safe(lambda: exif.get_ifd(_EXIF_IFD)) or {}
    gps_ifd = _safe(lambda: exif.get_ifd(_GPS_IFD)) or {}

    def first(tag: int, *ifds: Mapping[int, Any]) -> Any:
        for ifd in ifds:
            value = _safe(lambda: ifd.get(tag))
            if value not in (None, "", b""):
                return value
        return None

    def first_text(tag: int, *ifds: Mapping[int, Any]) -> Any:
        for ifd in ifds:
            value = first(tag, ifd)
            if clean_text(value):
                return value
        return None

    return {
        # Some phones (e.g. HTC) leave IFD0 Make as NULs and write it in the Exif IFD.
        "Make": first_text(_MAKE, exif, exif_ifd),
        "Model": first_text(_MODEL, exif, exif_ifd),
        "Orientation": first(_ORIENTATION, exif),
        # TIFF/EP files (DNG, some TIFF) keep the capture dates in IFD0.
        "DateTimeOriginal": first(_DATETIME_ORIGINAL, exif_ifd, exif),
        "DateTimeDigitized": first(_DATETIME_DIGITIZED, exif_ifd, exif),
        "DateTime": first(_DATETIME, exif, exif_ifd),
        "OffsetTimeOriginal": first(_OFFSET_TIME_ORIGINAL, exif_ifd, exif),
        "OffsetTimeDigitized": first(_OFFSET_TIME_DIGITIZED, exif_ifd, exif),
        "OffsetTime": first(_OFFSET_TIME, exif_ifd, exif),
        "GPSLatitude": first(_GPS_LAT, gps_ifd),
        "GPSLatitudeRef": first(_GPS_LAT_REF, gps_ifd),
        "GPSLongitude": first(_GPS_LON, gps_ifd),
        "GPSLongitudeRef": first(_GPS_LON_REF, gps_ifd),
        "_xmp": first(_XMP_TAG, exif),  # TIFF keeps XMP as a tag
    }


def _pillow_xmp(img: Any, tags: Mapping[str, Any]) -> str | None:
    for raw in (img.info.get("xmp"), img.info.get("XML:com.adobe.xmp"), tags.get("_xmp")):
        text = _xmp_text(raw)
        if text:
            return text
    return None


def _apply_iptc_date(img: Any, meta: MediaMetadata) -> None:
    """IPTC DateCreated (2:55) + TimeCreated (2:60), as written by Photoshop-era tools without EXIF."""
    from PIL import IptcImagePlugin

    info = _safe(lambda: IptcImagePlugin.getiptcinfo(img)) or {}
    day = info.get((2, 55))
    if not isinstance(day, bytes) or len(day) < 8:
        return
    clock = info.get((2, 60)) if isinstance(info.get((2, 60)), bytes) else b"000000"
    text = day[:8].decode("ascii", "ignore")
    hms = clock[:6].decode("ascii", "ignore").ljust(6, "0")
    taken, offset = parse_datetime(f"{text[:4]}:{text[4:6]}:{text[6:8]} {hms[:2]}:{hms[2:4]}:{hms[4:6]}{clock[6:].decode('ascii', 'ignore')}")
    if taken is not None:
        meta.taken_at, meta.taken_at_offset, meta.taken_at_source = taken, offset, "iptc:DateCreated"


def _read_with_pillow(path: str) -> MediaMetadata | None:
    """Metadata via Pillow without decoding pixels; None when Pillow cannot identify the file."""
    _register_heif()
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Corrupt EXIF data", decompression-bomb warnings, ...
        try:
            img = Image.open(path)
        except Exception:  # unidentified, truncated header, decompression bomb: let the next reader try
            return None
        with img:
            tags = _pillow_tags(img)
            meta = _meta_from_tags(tags, _pillow_xmp(img, tags))
            if meta.taken_at is None:
                _apply_iptc_date(img, meta)
            width, height = _stored_size(img)
            if "original_orientation" in img.info:
                # pillow-heif has already applied the HEIF transforms (img.size is the display size) and reset
                # EXIF orientation to 1; the camera's value is kept in info["original_orientation"].
                meta.orientation = parse_orientation(img.info.get("original_orientation")) or meta.orientation
                meta.width, meta.height = _positive_int(width), _positive_int(height)
            else:
                meta.width, meta.height = _display_size(_positive_int(width), _positive_int(height),
                                                        meta.orientation in _ROTATED_ORIENTATIONS)
    return meta


def _stored_size(img: Any) -> tuple[int, int]:
    """Pixel size as stored in the file, before any orientation.

    Pillow's TIFF plugin already swaps `img.size` for orientations 5..8, so take TIFF's own
    ImageWidth/ImageLength tags there; other plugins report the stored size.
    """
    tags = getattr(img, "tag_v2", None)
    if tags is not None:
        width, height = _safe(lambda: tags.get(256)), _safe(lambda: tags.get(257))
        if isinstance(width, int) and isinstance(height, int):
            return width, height
    return img.size


def _exifread_tags(path: str) -> dict[str, Any] | None:
    """Canonical tags via exifread (handles RAW/TIFF-based files Pillow can't); None when it finds nothing."""
    try:
        import exifread

        _quiet_exifread()
        with open(path, "rb") as handle:
            raw = exifread.process_file(handle, details=False)
    except Exception:  # exifread raises assorted errors (even AssertionError on some HEIC files)
        return None
    if not raw:
        return None

    def value(*keys: str) -> Any:
        for key in keys:
            tag = raw.get(key)
            values = getattr(tag, "values", None)
            if values not in (None, "", []):
                return values
        return None

    def text(*keys: str) -> Any:
        for key in keys:
            if clean_text(value(key)):
                return value(key)
        return None

    return {
        "Make": text("Image Make", "EXIF Make"),
        "Model": text("Image Model", "EXIF Model"),
        "Orientation": value("Image Orientation"),
        "DateTimeOriginal": value("EXIF DateTimeOriginal", "Image DateTimeOriginal"),
        "DateTimeDigitized": value("EXIF DateTimeDigitized", "Image DateTimeDigitized"),
        "DateTime": value("Image DateTime", "EXIF DateTime"),
        "OffsetTimeOriginal": value("EXIF OffsetTimeOriginal", "Image OffsetTimeOriginal"),
        "OffsetTimeDigitized": value("EXIF OffsetTimeDigitized", "Image OffsetTimeDigitized"),
        "OffsetTime": value("EXIF OffsetTime", "Image OffsetTime"),
        "GPSLatitude": value("GPS GPSLatitude"),
        "GPSLatitudeRef": value("GPS GPSLatitudeRef"),
        "GPSLongitude": value("GPS GPSLongitude"),
        "GPSLongitudeRef": value("GPS GPSLongitudeRef"),
        "_xmp": value("Image ApplicationNotes"),  # XMP in TIFF-based RAW files
    }


def _quiet_exifread() -> None:
    """exifread logs a WARNING for every non-EXIF file it is shown; as a fallback reader that is noise.

    Only applies when the application has not configured the "exifread" logger itself.
    """
    logger = logging.getLogger("exifread")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.ERROR)


# LibRaw `flip` -> EXIF orientation (0: none, 3: 180°, 5: 90° CCW, 6: 90° CW).
_LIBRAW_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}


def _rawpy_size(path: str) -> tuple[int, int, int] | None:
    """(width, height, flip) of the developed RAW image before rotation; parses headers only, no unpack."""
    try:
        import rawpy

        with rawpy.imread(path) as raw:
            sizes = raw.sizes
            return int(sizes.width), int(sizes.height), int(sizes.flip)
    except Exception:
        return None


def _read_raw(path: str) -> MediaMetadata | None:
    """Metadata for RAW files (and anything Pillow can't open) via exifread + rawpy; None if both fail."""
    tags = _exifread_tags(path)
    size = _rawpy_size(path)
    if tags is None and size is None:
        return None
    tags = tags or {}
    meta = _meta_from_tags(tags, _xmp_text(tags.get("_xmp")))
    # Without LibRaw the size stays None: EXIF PixelX/YDimension often describes the original, not this
    # file (resized copies keep it), and a wrong size is worse than one the caller fills in from pixels.
    if size is not None:
        width, height, flip = size
        if meta.orientation is None:
            meta.orientation = _LIBRAW_FLIP_TO_ORIENTATION.get(flip)
        meta.width, meta.height = _display_size(_positive_int(width), _positive_int(height), flip in (5, 6))
    return meta


def _check_file(path: str) -> None:
    """Fail early with a plain message for paths that are not readable regular files."""
    try:
        if not os.path.isfile(path):
            raise MetadataError(f"not a file: {path}")
        if not os.access(path, os.R_OK):
            raise MetadataError(f"permission denied: {path}")
    except MetadataError:
        raise
    except Exception as error:  # e.g. an undecodable path
        raise MetadataError(f"cannot access {path!r}: {error}") from error


def _extension(path: str) -> str:
    return os.path.splitext(os.fsdecode(path))[1].lower()


def read_photo_metadata(path: str) -> MediaMetadata:
    """Metadata of a photo (JPEG, HEIC, PNG, WebP, TIFF, RAW, ...); MetadataError if no reader recognises it."""
    _check_file(path)
    try:
        is_raw = _extension(path) in RAW_EXTENSIONS
        meta = None if is_raw else _read_with_pillow(path)
        if meta is None:
            meta = _read_raw(path)
        if meta is None and is_raw:  # e.g. a ".dng" that is really a plain TIFF/JPEG
            meta = _read_with_pillow(path)
    except Exception as error:  # defensive: a reader bug must surface as a clear, catchable error
        raise MetadataError(f"cannot read photo metadata ({type(error).__name__}: {error})") from error
    if meta is None:
        if os.path.getsize(path) == 0:
            raise MetadataError("empty file (0 bytes)")
        raise MetadataError("not a recognised image format (or the file is corrupt)")
    return meta


# --------------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------------

# FFmpeg demuxers that "open" non-video files: still images and plain text (the tty/ANSI-art demuxer).
_NOT_VIDEO_FORMATS = frozenset({"tty", "image2", "ico", "webp_pipe", "svg_pipe"})

# ISO-BMFF brands of still images (HEIC/AVIF): FFmpeg's mov demuxer opens them, but they are photos.
_STILL_IMAGE_BRANDS = frozenset({"heic", "heix", "heim", "heis", "mif1", "avif"})

# Placeholder dates written by muxers when the real time is unknown (QuickTime and Unix epochs).
_EPOCH_PLACEHOLDER_DAYS = frozenset({(1904, 1, 1), (1970, 1, 1)})

_APPLE_CREATION_KEYS = ("com.apple.quicktime.creationdate",)
_CREATION_KEYS = ("creation_time",)
_MAKE_KEYS = ("com.apple.quicktime.make", "com.android.manufacturer", "make")
_MODEL_KEYS = ("com.apple.quicktime.model", "com.android.model", "model")
_LOCATION_KEYS = ("com.apple.quicktime.location.iso6709", "location", "location-eng", "\u00a9xyz")


def _first_text(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        text = clean_text(metadata.get(key))
        if text:
            return text
    return None


def _lower_keys(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Case-insensitive view: Matroska upper-cases tag names ("LOCATION", "CREATION_TIME")."""
    return {str(key).lower(): value for key, value in (metadata or {}).items()}


def _video_date(dicts: list[dict[str, Any]]) -> tuple[datetime, str | None, str] | None:
    """Apple's local creation date (has the real offset) > container/stream creation_time (UTC)."""
    for source, keys in (("quicktime:creationdate", _APPLE_CREATION_KEYS),
                         ("quicktime:creation_time", _CREATION_KEYS)):
        for metadata in dicts:
            for key in keys:
                taken, offset = parse_datetime(metadata.get(key))
                if taken is None or (taken.year, taken.month, taken.day) in _EPOCH_PLACEHOLDER_DAYS:
                    continue
                if source == "quicktime:creation_time" and offset is None:
                    offset = "+00:00"  # QuickTime/MP4 creation_time is UTC by definition
                return taken, offset, source
    return None


def _video_position(dicts: list[dict[str, Any]]) -> tuple[float, float] | None:
    for metadata in dicts:
        for key in _LOCATION_KEYS:
            position = parse_iso6709(metadata.get(key))
            if position:
                return position
    return None


# Display-matrix rotation (degrees counter-clockwise, as FFmpeg reports it) -> EXIF orientation.
_ROTATION_TO_ORIENTATION = {90: 8, 180: 3, 270: 6}


def _normalize_rotation(value: Any) -> int | None:
    number = _to_float(value)
    if number is None:
        return None
    return int(round(number / 90.0)) * 90 % 360


def _stream_rotation(container: Any, stream: Any) -> int:
    """Rotation of the video track (0/90/180/270 CCW); PyAV only exposes the display matrix on frames.

    Old FFmpeg exported a "rotate" tag (clockwise); otherwise decode the first frame, which carries the
    container's display matrix as side data. Costs one frame decode; 0 when that fails.
    """
    rotate_tag = _normalize_rotation(_lower_keys(stream.metadata).get("rotate"))
    if rotate_tag is not None:
        return (-rotate_tag) % 360
    try:
        stream.thread_type = "NONE"  # frame threading would delay the first frame by several packets
    except Exception:
        pass
    try:
        for count, packet in enumerate(container.demux(stream)):
            frames = stream.decode(packet) if packet.size else stream.decode(None)
            if frames:
                return _normalize_rotation(frames[0].rotation) or 0
            if count >= 64 or not packet.size:
                break
    except Exception:
        pass
    return 0


def _stream_duration(container: Any, stream: Any) -> float | None:
    import av

    if container.duration and container.duration > 0:
        return float(container.duration) / av.time_base
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _stream_fps(stream: Any) -> float | None:
    for rate in (_safe(lambda: stream.average_rate), _safe(lambda: stream.guessed_rate)):
        if rate:
            fps = _to_float(rate)
            if fps and fps > 0:
                return fps
    return None


def _video_meta(container: Any) -> MediaMetadata:
    if container.format.name in _NOT_VIDEO_FORMATS or container.format.name.endswith("_pipe"):
        raise MetadataError(f"not a video container (FFmpeg sees {container.format.name!r})")
    brand = clean_text(_lower_keys(container.metadata).get("major_brand"))
    if brand and brand.lower() in _STILL_IMAGE_BRANDS:
        raise MetadataError(f"a still image (HEIF brand {brand!r}), not a video")
    streams = [stream for stream in container.streams.video
               if not (_safe(lambda: stream.disposition) or 0) & _attached_pic()]
    if not streams:
        raise MetadataError("no video stream")
    stream = streams[0]
    dicts = [_lower_keys(container.metadata), _lower_keys(stream.metadata),
             *(_lower_keys(other.metadata) for other in container.streams if other is not stream)]
    meta = MediaMetadata()
    date = _video_date(dicts)
    if date:
        meta.taken_at, meta.taken_at_offset, meta.taken_at_source = date
    position = _video_position(dicts)
    if position:
        meta.lat, meta.lon = position
    meta.camera_make = _first_text(dicts[0], _MAKE_KEYS)
    meta.camera_model = _first_text(dicts[0], _MODEL_KEYS)
    meta.duration = _safe(lambda: _stream_duration(container, stream))
    meta.fps = _stream_fps(stream)
    meta.video_codec = _safe(lambda: stream.codec_context.name)
    width = _positive_int(_safe(lambda: stream.codec_context.width))
    height = _positive_int(_safe(lambda: stream.codec_context.height))
    rotation = _stream_rotation(container, stream)
    meta.orientation = _ROTATION_TO_ORIENTATION.get(rotation)
    meta.width, meta.height = _display_size(width, height, rotation in (90, 270))
    return meta


def _attached_pic() -> int:
    """Disposition flag of cover-art "video" streams (an MP3's album art is not a video)."""
    import av.stream

    return int(av.stream.Disposition.attached_pic)


def read_video_metadata(path: str) -> MediaMetadata:
    """Metadata of a video via FFmpeg (PyAV); MetadataError when it is not a readable video."""
    _check_file(path)
    if os.path.getsize(path) == 0:
        raise MetadataError("empty file (0 bytes)")
    try:
        import av

        container = av.open(path, metadata_errors="ignore")
    except Exception as error:
        raise MetadataError(f"not a readable video: {_av_message(error)}") from error
    try:
        with container:
            return _video_meta(container)
    except MetadataError:
        raise
    except Exception as error:
        raise MetadataError(f"cannot read video metadata: {_av_message(error)}") from error


def _av_message(error: Exception) -> str:
    """FFmpeg errors repeat the file name; keep the human part ("Invalid data found when processing input")."""
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


# --------------------------------------------------------------------------------------------------
# Fallback date
# --------------------------------------------------------------------------------------------------

def _format_offset(delta: timedelta | None) -> str | None:
    if delta is None:
        return None
    minutes = int(delta.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def apply_file_time_fallback(meta: MediaMetadata, mtime: float) -> MediaMetadata:
    """Use the file's modification time (local wall-clock) when no embedded date exists.

    Updates `meta` in place and returns it. mtime is a weak signal (copies reset it), hence the
    distinct source "file:mtime" so the UI and later re-reads can tell it apart.
    """
    if meta.taken_at is not None:
        return meta
    try:
        local = datetime.fromtimestamp(float(mtime), tz=timezone.utc).astimezone()
    except (TypeError, ValueError, OverflowError, OSError):
        return meta
    meta.taken_at = local.replace(tzinfo=None)
    meta.taken_at_offset = _format_offset(local.utcoffset())
    meta.taken_at_source = "file:mtime"
    return meta
