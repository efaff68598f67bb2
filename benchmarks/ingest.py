"""Ingest throughput per stage, each against a baseline measured in the same run.

    .venv/bin/python benchmarks/ingest.py                      # 300 photos (12 MP) + 12 videos, ~10 min on 2 cores
    .venv/bin/python benchmarks/ingest.py --photos 10000 --videos 200 --keep /data/bench   # the issue's size

Generates a realistic library from the permissively licensed images in tests/data (12 MP JPEGs with EXIF,
varied crops; H.264 and HEVC 1080p videos of 10–120 s made with PyAV), ingests it with the offline profile in
one process tree, and prints per stage: items/s, CPU utilisation, peak RSS, the baseline and the ratio:
- scan + metadata + thumbnails  vs  a bare loop (same worker count) that only draft-decodes and resizes;
- keyframes                     vs  `ffmpeg -skip_frame nokey -i X -vsync 0 -f image2` (same parallelism);
- each analyzer                 vs  the model's own `run` on pre-decoded images (pipeline overhead), embed +
                                    tags as one MobileNetV2 pass when they share it, as the pipeline runs them;
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
from typing import Any, Callable

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data"
SEED_PHOTOS, SEED_VIDEOS = 6569, 2357
UNIQUE_VIDEOS = 24  # encoded from scratch; the rest are remuxed copies (see _remux_video)
UNIQUE_PHOTOS = 2500  # encoded from scratch; the rest are byte-level copies (see _copy_photo)


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
    have_p, have_v = generated_counts(folder)
    rng = random.Random(7)
    unique_p = min(photos, UNIQUE_PHOTOS)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_make_photo, [(i, str(folder / "photos"), megapixels) for i in range(have_p, unique_p)],
                      chunksize=8))
        for i in range(max(have_p, unique_p), photos):
            _copy_photo(folder / "photos", i, i % unique_p)
        unique = min(videos, UNIQUE_VIDEOS)
        jobs = [(i, str(folder / "videos"), rng.uniform(10, 120) if videos > 20 else rng.uniform(10, 40),
                 "libx264" if i % 2 == 0 else "libx265") for i in range(have_v, unique)]
        list(pool.map(_make_video, jobs))
        copies = [(i, str(folder / "videos"), i % unique) for i in range(max(have_v, unique), videos)]
        list(pool.map(_remux_video, copies, chunksize=4))


def generated_counts(folder: Path) -> tuple[int, int]:
    """(photos, videos) already generated in `folder`: a kept folder is topped up, never made again."""
    return len(list((folder / "photos").glob("*.jpg"))), len(list((folder / "videos").glob("*.mp4")))


# Disk per file, measured on the generated library (10,000 photos + 200 videos: 13 GB of media, ~2 GB of
# library): a 12 MP photo ~0.74 MB (0.062 MB per megapixel) + ~0.15 MB of previews; a video ~28 MB + its
# keyframes' previews and the ffmpeg baseline's full-size JPEGs (~5 MB).
MB_PER_MEGAPIXEL, MB_PER_PHOTO_PREVIEWS, MB_PER_VIDEO, MB_PER_VIDEO_FRAMES = 0.07, 0.2, 35.0, 5.0


def check_free_space(folder: Path, photos: int, videos: int, megapixels: float) -> None:
    """Fail before generating anything when the disk cannot hold the run: a full disk half-way through an hour's
    run loses the hour, and starves whatever else shares the disk (a CI run's venv install)."""
    folder.mkdir(parents=True, exist_ok=True)
    have_p, have_v = generated_counts(folder)
    need_mb = (max(0, photos - have_p) * megapixels * MB_PER_MEGAPIXEL + photos * MB_PER_PHOTO_PREVIEWS
               + max(0, videos - have_v) * MB_PER_VIDEO + videos * MB_PER_VIDEO_FRAMES)
    free_mb = shutil.disk_usage(folder).free / 1e6
    if need_mb * 1.2 > free_mb:
        raise SystemExit(f"benchmark needs about {need_mb / 1e3:.1f} GB in {folder} and {free_mb / 1e3:.1f} GB "
                         f"are free: free some space or pass a smaller --photos / --videos")


def _copy_photo(folder: Path, index: int, original: int) -> None:
    """Another JPEG with the same pixels and new bytes (a comment segment after SOI), so a new content hash.

    Encoding 12 MP JPEGs runs ~5/s on 2 cores (35 min for 10,000); what the benchmark measures, decoding and
    analyzing each file, is the same for a copy."""
    data = (folder / f"IMG_{original:05d}.jpg").read_bytes()
    comment = f"bench copy {index}".encode()
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    (folder / f"IMG_{index:05d}.jpg").write_bytes(data[:2] + segment + data[2:])


def _remux_video(args: tuple[int, str, int]) -> None:
    """Another file with the same streams (new bytes, new content hash) without encoding 1080p again: encoding
    200 videos of up to 2 minutes would take hours on 2 cores, decoding them (what we measure) does not."""
    import av

    index, folder, original = args
    source = Path(folder) / f"VID_{original:04d}.mp4"
    with av.open(str(source)) as inp, av.open(str(Path(folder) / f"VID_{index:04d}.mp4"), "w") as out:
        out.metadata["title"] = f"bench copy {index}"
        out.metadata["creation_time"] = f"{2005 + index % 20}-{1 + index % 12:02d}-01T12:00:00Z"
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)


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
    included, which `getrusage(RUSAGE_CHILDREN)` cannot see): RSS sampled every 0.2 s, PSS every 5 s.

    Why not PSS every time: it makes the kernel walk every page table (/proc/PID/smaps_rollup: ~60 ms for the
    analyzer process with torch and Milvus Lite mapped, ~170 ms through psutil's full smaps parse), and at
    0.2 s that cost the measured analyzer stage ~21 % of a core, charged to the pipeline. RSS (statm) is ~1 ms.
    """

    RSS_EVERY, PSS_EVERY, TREE_EVERY = 0.2, 5.0, 2.0

    def __enter__(self) -> "Meter":
        import threading

        import psutil

        self._psutil = psutil
        self.rss_mb = self.pss_mb = 0.0
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.t0 = time.perf_counter()
        self.cpu0 = psutil.cpu_times()
        self._thread.start()
        return self

    def _tree(self) -> list:
        me = self._psutil.Process()
        return [me, *me.children(recursive=True)]

    def _tree_rss(self, procs: list) -> float:
        """RSS in MB summed over the tree: pages shared by the workers count once per process."""
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except self._psutil.Error:
                pass
        return total / 2**20

    @staticmethod
    def _tree_pss(procs: list) -> float:
        """PSS in MB summed over the tree: shared pages split between processes (what the machine spends)."""
        total = 0
        for proc in procs:
            try:
                for line in Path(f"/proc/{proc.pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
            except (OSError, ValueError):
                pass
        return total / 2**20

    def _sample(self) -> None:
        procs, listed, pss_at = self._tree(), 0.0, -self.PSS_EVERY
        while not self._stop.is_set():
            now = time.perf_counter() - self.t0
            if now - listed >= self.TREE_EVERY:
                procs, listed = self._tree(), now
            rss = self._tree_rss(procs)
            self.samples.append((now, rss))
            self.rss_mb = max(self.rss_mb, rss)
            if now - pss_at >= self.PSS_EVERY:
                self.pss_mb, pss_at = max(self.pss_mb, self._tree_pss(procs)), now
            self._stop.wait(self.RSS_EVERY)

    def rss_at(self, fraction: float) -> float:
        """Tree RSS (MB) around this fraction of the run: flat memory means these stay level as files pile up."""
        if not self.samples:
            return 0.0
        end = self.samples[-1][0] * fraction
        window = [rss for t, rss in self.samples if end - 30 <= t <= end] or [self.samples[-1][1]]
        return max(window)

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
    shutil.rmtree(scratch, ignore_errors=True)
    return len(paths) / meter.seconds


@dataclass(frozen=True)
class Reference:
    stage: str
    run: Callable[[list[Image.Image]], Any]
    label: str
    processes: int  # the pipeline runs it in this many processes (credited perfect scaling)
    counted: bool   # part of the sum the analyzer stage is compared with


def reference_runs(models: dict[str, Any], workers: int) -> list[Reference]:
    """Each model's bare run, as the pipeline runs them: MobileNetV2 once for embed + tags.

    When embed and tags share the backbone the pipeline computes it once per image, so their reference is that
    one pass (`run_with_tags`); each model's separate run is still timed, for the table, but not counted.
    """
    from ingest.analyze import one_pass_serves_both

    embed, tags = models.get("embed"), models.get("tags")
    shared = one_pass_serves_both(embed, tags)
    runs = []
    for stage, model in models.items():
        alone = shared and stage in ("embed", "tags")
        processes = workers if getattr(model, "single_threaded", False) else 1
        label = "model.run on pre-decoded images" + (
            f" x {processes} processes (perfect scaling)" if processes > 1 else "") + (" (not counted)" if alone else "")
        runs.append(Reference(f"{stage} alone" if alone else stage, model.run, label, processes, not alone))
    if shared:
        runs.append(Reference("embed+tags, one pass", lambda images: embed.run_with_tags(images, tags),
                              "embed.run_with_tags: one MobileNetV2 pass for both, as the pipeline runs them", 1, True))
    return runs


def run(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pe-bench-"))
    try:
        check_free_space(folder, args.photos, args.videos, args.megapixels)
        return _generate_and_measure(args, folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)  # ~15 GB at the size: never left behind


def _generate_and_measure(args: argparse.Namespace, folder: Path) -> tuple[list[Row], list[str]]:
    from sqlmodel import select

    from catalog.db import session_for
    from catalog.models import Media
    from catalog.settings import Library
    from ingest.analyze import backfill, images_of, load_analyzer, run_analyzers
    from ingest.pipeline import run_extract
    from ingest.scan import add_source, scan_source

    workers = args.workers or os.cpu_count() or 1
    print(f"generating {args.photos} photos ({args.megapixels} MP) and {args.videos} videos in {folder} ...",
          flush=True)
    generate(folder, args.photos, args.videos, args.megapixels, workers)
    library = Library.at(folder / "library")
    shutil.rmtree(library.root, ignore_errors=True)
    library.ensure()
    photos = sorted(str(p) for p in (folder / "photos").glob("*.jpg"))  # all of them: scan takes the folder
    videos = sorted(str(p) for p in (folder / "videos").glob("*.mp4"))
    notes: list[str] = []
    stage_meters: list[Meter] = []
    with session_for(library.database_url) as session:
        # the ingest itself, stage by stage, as `photo-engine ingest` runs it (baselines come afterwards)
        print("ingesting photos ...", flush=True)
        with Meter() as photo_m:
            source = add_source(session, folder / "photos")
            scan_source(session, library, source, workers=workers)
            photo_summary = run_extract(session, library, workers=workers, batch_size=args.batch_size)
        print(f"  {photo_m.seconds:.0f} s; ingesting videos ...", flush=True)
        with Meter() as video_m:
            source = add_source(session, folder / "videos")
            scan_source(session, library, source, workers=workers)
            video_summary = run_extract(session, library, workers=workers, batch_size=args.batch_size)
        print(f"  {video_m.seconds:.0f} s; analyzers {', '.join(args.analyzers)} ...", flush=True)
        models = {stage: load_analyzer(stage) for stage in args.analyzers}
        all_refs = [ref for media in session.exec(select(Media)).all() for ref in images_of(session, library, media)]
        sample = random.Random(1).sample(all_refs, min(args.reference_images, len(all_refs)))
        warm = [Image.open(ref.path).convert("RGB") for ref in sample[:2]]
        for model in models.values():
            model.run(warm)  # load weights outside the timings
        backfill(session, list(models))
        with Meter() as analyze_m:
            summaries = run_analyzers(session, library, list(models), batch_size=args.batch_size, models=models,
                                      workers=workers)
        stage_meters = [photo_m, video_m, analyze_m]
        failures = photo_summary.failed + video_summary.failed + sum(s.failed for s in summaries.values())
        notes.append(f"failures: extract {photo_summary.failed + video_summary.failed}, analyzers "
                     + ", ".join(f"{k} {v.failed}" for k, v in summaries.items()) + f" (total {failures})")

    # baselines, each on the same files, after the ingest so they never compete with it
    print("baselines ...", flush=True)
    rows: list[Row] = []
    bare = bare_photo_loop(photos[:args.baseline_files], workers)
    rows.append(Row("scan+metadata+thumbnails (photos)", len(photos), photo_m.seconds, photo_m.cpu, photo_m.rss_mb,
                    "bare draft-decode+resize loop", bare))
    ff = ffmpeg_keyframes(videos, workers, folder / "ffmpeg-out")
    rows.append(Row("video metadata+keyframes (videos)", len(videos), video_m.seconds, video_m.cpu, video_m.rss_mb,
                    "ffmpeg -skip_frame nokey" if ff else "ffmpeg not installed", ff or 0.0))
    images = len(all_refs)
    decoded = [Image.open(ref.path).convert("RGB") for ref in sample]  # only now: not held during the ingest
    bare_seconds_per_image = 0.0
    for ref in reference_runs(models, workers):
        t0 = time.perf_counter()
        ref.run(decoded)
        rate = len(decoded) / (time.perf_counter() - t0) * ref.processes
        bare_seconds_per_image += 1 / rate if ref.counted else 0.0
        rows.append(Row(f"  {ref.stage} (reference)", len(decoded), 0.0, 0.0, 0.0, ref.label, rate))
    rows.append(Row(f"analyzers {'+'.join(models)} (images)", images, analyze_m.seconds, analyze_m.cpu,
                    analyze_m.rss_mb, "sum of the counted bare runs", 1 / bare_seconds_per_image))
    seconds = sum(m.seconds for m in stage_meters)
    cpu = sum(m.cpu * m.seconds for m in stage_meters) / seconds
    rows.append(Row("end to end (files)", len(photos) + len(videos), seconds, cpu,
                    max(m.rss_mb for m in stage_meters)))
    for m, name in zip(stage_meters, ("photos", "videos", "analyzers")):
        notes.append(f"peak memory during {name}: RSS {m.rss_mb:.0f} MB, PSS {m.pss_mb:.0f} MB")
        notes.append(f"tree RSS during {name} at 25/50/75/100% of its time: "
                     + " / ".join(f"{m.rss_at(f):.0f}" for f in (0.25, 0.5, 0.75, 1.0)) + " MB")
    return rows, notes


def report(rows: list[Row], notes: list[str], args: argparse.Namespace) -> str:
    lines = ["| stage | items | items/s | CPU | peak RSS MB | baseline (same run) | baseline/s | ratio |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for row in rows:
        ratio = f"{row.rate / row.baseline_rate:.2f}" if row.baseline_rate and row.seconds else "-"
        measured = (f"{row.rate:.2f} | {row.cpu:.0%} | {row.rss_mb:.0f}" if row.seconds else "- | - | -")
        lines.append(f"| {row.stage} | {row.items} | {measured} | {row.baseline or '-'} | "
                     f"{row.baseline_rate:.2f} | {ratio} |")
    photo_row, video_row = rows[0], rows[1]
    analyzer_row = next(r for r in rows if r.stage.startswith("analyzers"))
    end_row = rows[-1]
    frames_per_video = (analyzer_row.items - photo_row.items) / max(1, video_row.items)
    seed_images = SEED_PHOTOS + SEED_VIDEOS * frames_per_video
    hours = (SEED_PHOTOS / photo_row.rate + SEED_VIDEOS / video_row.rate +
             seed_images / analyzer_row.rate) / 3600 if video_row.rate else 0.0
    lines += ["", f"End to end: {end_row.rate:.2f} files/s. The seed library ({SEED_PHOTOS} photos + {SEED_VIDEOS} "
              f"videos; {frames_per_video:.1f} analyzed keyframes per video as here, so {seed_images:,.0f} images) "
              f"would take {hours:.2f} h on this machine (extract {SEED_PHOTOS / photo_row.rate / 3600:.2f} h + "
              f"{SEED_VIDEOS / video_row.rate / 3600:.2f} h, analyzers {seed_images / analyzer_row.rate / 3600:.2f} h).",
              ""]
    lines += [f"- {note}" for note in notes]
    lines += ["", f"Command: `.venv/bin/python {' '.join(sys.argv)}`; {os.cpu_count()} cores, workers "
              f"{args.workers or os.cpu_count()}, batch size {args.batch_size}."]
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
    parser.add_argument("--baseline-files", type=int, default=400,
                        help="photos the bare decode loop runs on (ffmpeg runs on every video)")
    parser.add_argument("--reference-images", type=int, default=256,
                        help="images each model's own run is timed on (faces vary with content: 64 was too few)")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args()
    rows, notes = run(args)
    text = report(rows, notes, args)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
