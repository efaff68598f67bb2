"""Decide whether a file is a photo or a video by its content (magic bytes), never by its name.

Extensions lie (a PNG saved as .jpg, a phone clip renamed .jpg), so the name is only a hint for the one case
content cannot settle cheaply: a TIFF container that is really a camera RAW (NEF, ARW, ... are plain TIFFs).
"""
from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass

import filetype

HEADER_SIZE = 4096


class UnsupportedMedia(Exception):
    """Clear, human reason why a file is not a photo/video we can read."""


@dataclass(frozen=True)
class Detected:
    """What a file is: kind "photo" | "video" and a coarse container format."""

    kind: str
    format: str


RAW_EXTENSIONS: frozenset[str] = frozenset({
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf", ".pef",
    ".srw", ".x3f", ".erf", ".kdc", ".dcr", ".mrw", ".3fr", ".iiq", ".mef", ".mos", ".rwl",
})

MEDIA_EXTENSIONS: frozenset[str] = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".hif", ".avif",
    ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw",
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".3gp", ".mts", ".m2ts", ".wmv",
})

_PHOTO, _VIDEO = "photo", "video"

# ISO-BMFF (`ftyp`) brands. HEIF stills/sequences, AVIF, Canon CR3, MP4 family, QuickTime, audio-only MP4.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1",
                          b"msf1", b"mif2", b"avif", b"avis", b"avio", b"jpeg", b"jpgs"})
_RAW_BRANDS = frozenset({b"crx "})
_MOV_BRANDS = frozenset({b"qt  "})
_AUDIO_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "})
_MP4_BRANDS = frozenset({b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9",
                         b"mp41", b"mp42", b"mp71", b"avc1", b"M4V ", b"M4VH", b"M4VP", b"mmp4", b"MSNV",
                         b"dash", b"f4v ", b"NDAS", b"XAVC", b"3g2a", b"3g2b", b"3g2c", b"3ge6", b"3ge7",
                         b"3gg6", b"3gp4", b"3gp5", b"3gp6", b"3gs7", b"kddi", b"CAEP", b"MQT "})
# QuickTime files predating `ftyp` start directly with one of these atoms.
_QT_FIRST_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})

_ASF_GUID = bytes.fromhex("3026B2758E66CF11A6D900AA0062CE6C")
_DNG_VERSION_TAG = 0xC612
_CANON_CR2_MARK = b"CR"

# What `filetype` names map to, for the formats our own checks below do not already settle.
_FILETYPE_MAP: dict[str, Detected] = {
    "jpg": Detected(_PHOTO, "jpeg"), "png": Detected(_PHOTO, "png"), "apng": Detected(_PHOTO, "png"),
    "gif": Detected(_PHOTO, "gif"), "webp": Detected(_PHOTO, "webp"), "tif": Detected(_PHOTO, "tiff"),
    "cr2": Detected(_PHOTO, "raw"), "heic": Detected(_PHOTO, "heif"), "avif": Detected(_PHOTO, "heif"),
    "mp4": Detected(_VIDEO, "mp4"), "m4v": Detected(_VIDEO, "mp4"), "3gp": Detected(_VIDEO, "mp4"),
    "mov": Detected(_VIDEO, "mov"), "avi": Detected(_VIDEO, "avi"), "mkv": Detected(_VIDEO, "mkv"),
    "webm": Detected(_VIDEO, "webm"), "wmv": Detected(_VIDEO, "wmv"),
}


def sniff(header: bytes, ext_hint: str = "") -> Detected | None:
    """Classify the first bytes of a file; None means "not a photo or video". Pure: no I/O."""
    header = bytes(header[:HEADER_SIZE])
    ext = _normalise_ext(ext_hint)
    for check in (_sniff_isobmff, _sniff_riff, _sniff_ebml, _sniff_simple_images, _sniff_raw_magic,
                  _sniff_mpeg, _sniff_asf):
        found = check(header)
        if found is not None:
            return found
    if _is_tiff(header):
        return Detected(_PHOTO, "raw" if _tiff_is_raw(header, ext) else "tiff")
    if _is_old_quicktime(header):
        return Detected(_VIDEO, "mov")
    return _sniff_with_filetype(header)


def detect(path: str) -> Detected:
    """Read a file's header and classify it; raise UnsupportedMedia with a human reason otherwise.

    The file is opened non-blocking and checked to be a regular file *before* reading, so a FIFO or device
    that happens to be named x.jpg can never hang the scan.
    """
    header = _read_header(path)
    found = sniff(header, os.path.splitext(path)[1])
    if found is None:
        raise UnsupportedMedia(_not_media_reason(header))
    return found


def _normalise_ext(ext_hint: str) -> str:
    ext = ext_hint.strip().lower()
    if ext and not ext.startswith("."):
        ext = "." + ext
    return ext


def _read_header(path: str) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UnsupportedMedia("file not found") from None
    except PermissionError:
        raise UnsupportedMedia("permission denied") from None
    except IsADirectoryError:
        raise UnsupportedMedia("not a regular file (directory)") from None
    except OSError as error:
        raise UnsupportedMedia(f"cannot open file: {error.strerror or error}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsupportedMedia(f"not a regular file ({_file_type_name(info.st_mode)})")
        if info.st_size == 0:
            raise UnsupportedMedia("empty file (0 bytes)")
        return _read_some(fd, HEADER_SIZE)
    finally:
        os.close(fd)


def _read_some(fd: int, size: int) -> bytes:
    """Read up to `size` bytes (short reads are normal on network filesystems)."""
    chunks: list[bytes] = []
    remaining = size
    try:
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except PermissionError:
        raise UnsupportedMedia("permission denied") from None
    except OSError as error:
        raise UnsupportedMedia(f"cannot read file: {error.strerror or error}") from None
    data = b"".join(chunks)
    if not data:
        raise UnsupportedMedia("empty file (0 bytes)")
    return data


def _file_type_name(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


# --- container checks -------------------------------------------------------------------------------------

def _sniff_isobmff(header: bytes) -> Detected | None:
    """MP4/MOV/3GP/HEIF/AVIF/CR3 all start with an `ftyp` box; its brands say which."""
    if len(header) < 12 or header[4:8] != b"ftyp":
        return None
    box_size = struct.unpack(">I", header[:4])[0]
    end = min(len(header), box_size if box_size >= 16 else 16, 512)
    major = header[8:12]
    compatible = [header[i:i + 4] for i in range(16, end - 3, 4)]
    for brand in [major, *compatible]:
        found = _classify_brand(brand)
        if found is not None:
            return found
    if major in _AUDIO_BRANDS:
        return None
    return Detected(_VIDEO, "mp4")  # unknown camera brand: the MP4 family is by far the likeliest


def _classify_brand(brand: bytes) -> Detected | None:
    if brand in _RAW_BRANDS:
        return Detected(_PHOTO, "raw")
    if brand in _HEIF_BRANDS:
        return Detected(_PHOTO, "heif")
    if brand in _MOV_BRANDS:
        return Detected(_VIDEO, "mov")
    if brand in _MP4_BRANDS or brand.startswith((b"3gp", b"3g2")):
        return Detected(_VIDEO, "mp4")
    return None


def _is_old_quicktime(header: bytes) -> bool:
    if len(header) < 8 or header[4:8] not in _QT_FIRST_ATOMS:
        return False
    size = struct.unpack(">I", header[:4])[0]
    return size == 1 or size >= 8


def _sniff_riff(header: bytes) -> Detected | None:
    if header[:4] != b"RIFF" or len(header) < 12:
        return None
    form = header[8:12]
    if form == b"WEBP":
        return Detected(_PHOTO, "webp")
    if form in (b"AVI ", b"AVIX"):
        return Detected(_VIDEO, "avi")
    return None  # WAV and friends


def _sniff_ebml(header: bytes) -> Detected | None:
    """Matroska and WebM share the EBML header; the DocType element tells them apart."""
    if header[:4] != b"\x1a\x45\xdf\xa3":
        return None
    doc_type = _ebml_doc_type(header)
    return Detected(_VIDEO, "webm" if doc_type == b"webm" else "mkv")


def _ebml_doc_type(header: bytes) -> bytes:
    at = header.find(b"\x42\x82", 4, 64)
    if at < 0 or at + 3 > len(header):
        return b""
    size_byte = header[at + 2]
    if size_byte & 0x80:  # one-byte VINT, the only form muxers use here
        length = size_byte & 0x7F
        return header[at + 3:at + 3 + length].rstrip(b"\x00")
    return b""


def _sniff_simple_images(header: bytes) -> Detected | None:
    if header[:3] == b"\xff\xd8\xff":
        return Detected(_PHOTO, "jpeg")
    if header[:8] == b"\x89PNG\r\n\x1a\n":
        return Detected(_PHOTO, "png")
    if header[:6] in (b"GIF87a", b"GIF89a"):
        return Detected(_PHOTO, "gif")
    return None


def _sniff_raw_magic(header: bytes) -> Detected | None:
    """RAW formats with their own magic (not plain TIFF): Fuji RAF, Panasonic RW2, Olympus ORF, Canon CR2."""
    if header.startswith(b"FUJIFILMCCD-RAW"):
        return Detected(_PHOTO, "raw")
    if header[:4] in (b"IIU\x00", b"IIRO", b"IIRS", b"MMOR"):
        return Detected(_PHOTO, "raw")
    if _is_tiff(header) and header[8:10] == _CANON_CR2_MARK:
        return Detected(_PHOTO, "raw")
    return None


def _sniff_mpeg(header: bytes) -> Detected | None:
    """MPEG program stream, elementary video, transport stream (188-byte) and BDAV/AVCHD (192-byte)."""
    if header[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return Detected(_VIDEO, "mpeg")
    if _ts_synced(header, 0, 188) or _ts_synced(header, 4, 192):
        return Detected(_VIDEO, "mpeg")
    return None


def _ts_synced(header: bytes, first: int, packet: int, packets: int = 3) -> bool:
    positions = [first + i * packet for i in range(packets)]
    if positions[-1] >= len(header):
        return False
    return all(header[p] == 0x47 for p in positions)


def _sniff_asf(header: bytes) -> Detected | None:
    return Detected(_VIDEO, "wmv") if header[:16] == _ASF_GUID else None


def _is_tiff(header: bytes) -> bool:
    return header[:4] in (b"II*\x00", b"MM\x00*")


def _tiff_is_raw(header: bytes, ext: str) -> bool:
    return ext in RAW_EXTENSIONS or _tiff_has_tag(header, _DNG_VERSION_TAG)


def _tiff_has_tag(header: bytes, tag: int) -> bool:
    """Look for `tag` in IFD0 when that IFD lies within the header (true for DNGs written by cameras/tools)."""
    order = "<" if header[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", header, 4)
        (count,) = struct.unpack_from(order + "H", header, ifd)
        for i in range(min(count, 512)):
            (entry_tag,) = struct.unpack_from(order + "H", header, ifd + 2 + 12 * i)
            if entry_tag == tag:
                return True
    except struct.error:  # IFD beyond the header: cannot tell cheaply
        return False
    return False


def _sniff_with_filetype(header: bytes) -> Detected | None:
    kind = filetype.guess(header)
    return _FILETYPE_MAP.get(kind.extension) if kind is not None else None


def _not_media_reason(header: bytes) -> str:
    if _looks_like_text(header):
        return "not a photo or video (content looks like text)"
    kind = filetype.guess(header)
    if kind is not None:
        what = "audio" if kind.mime.startswith("audio/") else kind.mime
        return f"not a photo or video (content looks like {what}: {kind.extension})"
    return "not a photo or video (unrecognised content)"


def _looks_like_text(header: bytes) -> bool:
    if header.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return True
    if b"\x00" in header:
        return False
    try:
        header.decode("utf-8")
        return True
    except UnicodeDecodeError as error:
        if error.start >= len(header) - 3:  # a multi-byte character cut by the header boundary
            return True
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in header)
    return printable >= 0.95 * len(header)
