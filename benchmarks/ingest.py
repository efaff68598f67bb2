"""Ingest throughput per stage, each against a baseline measured in the same run.

    .venv/bin/python benchmarks/ingest.py                      # 300 photos (12 MP) + 12 videos, ~10 min on 2 cores
    .venv/bin/python benchmarks/ingest.py --photos 10000 --videos 200 --keep /data/bench   # the issue's size

Generates a realistic library from the permissively licensed images in tests/data (12 MP JPEGs with EXIF,
varied crops; H.264 and HEVC 1080p videos of 10–120 s made with PyAV), ingests it with the offline profile in
one process tree, and prints per stage: items/s, CPU utilisation, peak RSS, the baseline and the ratio:
- scan + metadata + thumbnails  vs  a bare loop (same worker count) that only draft-decodes and resizes;
- keyframes                     vs  `ffmpeg -skip_frame nokey -i X -vsync 0 -f image2` (same parallelism);
- each analyzer                 vs  the model's own `run` on pre-decoded images (pipeline overhead);
- end to end: files/s, projected hours for the seed's 6,569 photos + 2,357 videos, peak RSS.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data"
SEED_PHOTOS, SEED_VIDEOS = 6569, 2357


# --------------------------------------------------------------------------------------------- generation
def _sources() -> list[Image.Image]:
    files = sorted((DATA / "photos").glob("*")) + sorted((DATA / "faces").glob("*")) + \
        [p for p in sorted((DATA / "exif").glob("*.jpg")) if p.stat().st_size > 30000]
    return [Image.open(p).convert("RGB") for p in files]


def _make_photo(args: tuple[int, str, int]) -> None:
    index, folder, megapixels = args
    rng = random.Random(index)
    source = _sources_cached()[index % len(_sources_cached())]
    w, h = source.size
    crop = source.crop((rng.randint(0, w // 8), rng.randint(0, h // 8), w - rng.randint(0, w // 8),
                        h - rng.randint(0, h // 8)))
    target_w = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    image = crop.resize((target_w, target_w * 3 // 4), Image.Resampling.BILINEAR)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "BenchCam", "Model 12"
    exif.get_ifd(0x8769)[0x9003] = f"{2005 + index % 20}:{1 + index % 12:02d}:{1 + index % 28:02d} 12:00:00"
    image.save(Path(folder) / f"IMG_{index:05d}.jpg", quality=88, exif=exif)


_CACHE: list[Image.Image] = []


def _sources_cached() -> list[Image.Image]:
    if not _CACHE:
        _CACHE.extend(_sources())
    return _CACHE


def _make_video(args: tuple[int, str, float, str]) -> None:
    import av

    index, folder, seconds, codec = args
    rng = random.Random(index)
    scenes = _sources_cached()
    path = Path(folder) / f"VID_{index:04d}.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(25, 1))
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "50"} if codec == "libx264" else {"preset": "ultrafast",
                                                                                           "x265-params": "keyint=50:log-level=error"}
        frames = int(seconds * 25)
        scene_len = max(25, frames // rng.randint(2, 6))
        base = None
        for n in range(frames):
            if n % scene_len == 0:
                base = np.asarray(scenes[rng.randrange(len(scenes))].resize((1920, 1080)), dtype=np.int16)
            assert base is not None
            shift = (n % scene_len) * 2
            frame = np.clip(np.roll(base, shift, axis=1) + (n % 7), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def generate(folder: Path, photos: int, videos: int, megapixels: float, workers: int) -> None:
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    have_p = len(list((folder / "photos").glob("*.jpg")))
    have_v = len(list((folder / "videos").glob("*.mp4")))
    rng = random.Random(7)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_make_photo, [(i, str(folder / "photos"), megapixels) for i in range(have_p, photos)],
                      chunksize=8))
        jobs = [(i, str(folder / "videos"), rng.uniform(10, 120) if videos > 20 else rng.uniform(10, 40),
                 "libx264" if i % 2 == 0 else "libx265") for i in range(have_v, videos)]
        list(pool.map(_make_video, jobs))


# ------------------------------------------------------------------------------------------- measurement
@dataclass
class Row:
    stage: str
    items: int
    seconds: float
    cpu: float
    rss_mb: float
    baseline: str = ""
    baseline_rate: float = 0.0

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


class Meter:
    """Wall time, machine-wide CPU utilisation, and peak RSS of this process tree (forkserver workers
    included, which `getrusage(RUSAGE_CHILDREN)` cannot see), sampled every 0.2 s."""

    def __enter__(self) -> "Meter":
        import threading

        import psutil

        self._psutil = psutil
        self.rss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.t0 = time.perf_counter()
        self.cpu0 = psutil.cpu_times()
        self._thread.start()
        return self

    def _tree_rss(self) -> float:
        me = self._psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except self._psutil.Error:
                pass
        return total / 2**20

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.rss_mb = max(self.rss_mb, self._tree_rss())
            self._stop.wait(0.2)

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()
        cpu1 = self._psutil.cpu_times()
        busy = lambda t: t.user + t.system + getattr(t, "nice", 0) + getattr(t, "irq", 0) + getattr(t, "softirq", 0)  # noqa: E731
        total = lambda t: busy(t) + t.idle + getattr(t, "iowait", 0)  # noqa: E731
        self.cpu = (busy(cpu1) - busy(self.cpu0)) / max(1e-9, total(cpu1) - total(self.cpu0))


def _bare_decode(path: str) -> tuple[int, int]:
    """What any thumbnailer must do at least: reduced-size JPEG decode, two resizes, no writes."""
    with Image.open(path) as image:
        image.draft("RGB", (1280, 1280))
        image = image.convert("RGB")
        large = image.copy()
        large.thumbnail((1280, 1280))
        small = large.copy()
        small.thumbnail((256, 256))
        return small.size


def bare_photo_loop(paths: list[str], workers: int) -> float:
    with Meter() as meter, ProcessPoolExecutor(workers) as pool:
        list(pool.map(_bare_decode, paths, chunksize=4))
    return len(paths) / meter.seconds


def _ffmpeg_one(args: tuple[str, str]) -> None:
    path, out = args
    Path(out).mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-skip_frame", "nokey", "-i", path, "-vsync", "0",
                    "-f", "image2", f"{out}/%04d.jpg"], check=True)


def ffmpeg_keyframes(paths: list[str], workers: int, scratch: Path) -> float | None:
    if shutil.which("ffmpeg") is None:
        return None
    with Meter() as meter, ProcessPoolExecutor(workers) as pool:
        list(pool.map(_ffmpeg_one, [(p, str(scratch / f"ff{i}")) for i, p in enumerate(paths)]))
    return len(paths) / meter.seconds


def run(args: argparse.Namespace) -> list[Row]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from catalog.db import session_for
    from catalog.settings import Library
    from ingest.analyze import load_analyzer, run_analyzer
    from ingest.pipeline import run_extract
    from ingest.queue import count_by_status
    from ingest.scan import add_source, scan_source

    workers = args.workers or os.cpu_count() or 1
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pe-bench-"))
    print(f"generating {args.photos} photos ({args.megapixels} MP) and {args.videos} videos in {folder} ...",
          flush=True)
    generate(folder, args.photos, args.videos, args.megapixels, workers)
    library = Library.at(folder / "library")
    shutil.rmtree(library.root, ignore_errors=True)
    library.ensure()
    photos = sorted(str(p) for p in (folder / "photos").glob("*.jpg"))[:args.photos]
    videos = sorted(str(p) for p in (folder / "videos").glob("*.mp4"))[:args.videos]
    rows: list[Row] = []
    with Meter() as total, session_for(library.database_url) as session:
        with Meter() as m:
            source = add_source(session, folder / "photos")
            scan_source(session, library, source, workers=workers)
            run_extract(session, library, workers=workers, batch_size=args.batch_size)
        bare = bare_photo_loop(photos, workers)
        rows.append(Row("scan+metadata+thumbnails", len(photos), m.seconds, m.cpu, m.rss_mb,
                        "bare draft-decode+resize loop", bare))
        with Meter() as m:
            source = add_source(session, folder / "videos")
            scan_source(session, library, source, workers=workers)
            run_extract(session, library, workers=workers, batch_size=args.batch_size)
        ff = ffmpeg_keyframes(videos, workers, folder / "ffmpeg-out")
        rows.append(Row("video metadata+keyframes", len(videos), m.seconds, m.cpu, m.rss_mb,
                        "ffmpeg -skip_frame nokey" if ff else "ffmpeg not installed", ff or 0.0))
        from ingest.analyze import backfill, images_of
        from catalog.models import Media
        from sqlmodel import select

        sample = [ref for media in session.exec(select(Media).limit(64)).all()
                  for ref in images_of(session, library, media)][:64]
        decoded = [Image.open(ref.path).convert("RGB") for ref in sample]
        for stage in args.analyzers:
            model = load_analyzer(stage)
            model.run(decoded[:2])  # load weights outside the timings
            backfill(session, [stage])
            items = count_by_status(session, stage).get("pending", 0)
            with Meter() as m:
                run_analyzer(session, library, stage, batch_size=args.batch_size, model=model)
            images = sum(len(images_of(session, library, media)) for media in session.exec(select(Media)).all())
            t0 = time.perf_counter()
            model.run(decoded)
            bare_rate = len(decoded) / (time.perf_counter() - t0)
            rows.append(Row(f"analyzer {stage} (images)", images, m.seconds, m.cpu, m.rss_mb,
                            "model.run on pre-decoded images", bare_rate))
            del items
    rows.append(Row("end to end (files)", len(photos) + len(videos), total.seconds, total.cpu, total.rss_mb))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def report(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [f"| stage | items | items/s | CPU | peak RSS MB | baseline | baseline/s | ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ratio = f"{row.rate / row.baseline_rate:.2f}" if row.baseline_rate else "-"
        lines.append(f"| {row.stage} | {row.items} | {row.rate:.2f} | {row.cpu:.0%} | {row.rss_mb:.0f} | "
                     f"{row.baseline or '-'} | {row.baseline_rate:.2f} | {ratio} |")
    photo_row, video_row = rows[0], rows[1]
    hours = (SEED_PHOTOS / photo_row.rate + SEED_VIDEOS / video_row.rate) / 3600 if video_row.rate else 0
    analyzer_hours = sum(SEED_PHOTOS / r.rate for r in rows if r.stage.startswith("analyzer") and r.rate) / 3600
    lines.append("")
    lines.append(f"Projected for the seed library ({SEED_PHOTOS} photos + {SEED_VIDEOS} videos at this mix): "
                 f"extract {hours:.2f} h, analyzers ~{analyzer_hours:.2f} h more (photos only; keyframes add "
                 f"in proportion). Command: `{' '.join(sys.argv)}`; {os.cpu_count()} cores.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--analyzers", nargs="*", default=["embed", "tags", "faces"])
    parser.add_argument("--keep", help="generate into (and reuse) this folder instead of a temporary one")
    args = parser.parse_args()
    print(report(run(args), args))


if __name__ == "__main__":
    main()
