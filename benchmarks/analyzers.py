"""Analyzer throughput: each adapter's `run` against the model's own bare forward pass, in the same run.

    .venv/bin/python benchmarks/analyzers.py     # writes benchmarks/ANALYZERS_RESULTS.md; ~16 min on 2 busy cores
    .venv/bin/python benchmarks/analyzers.py --only tags,clip --images 16 --repeats 1

Images are the real photos in tests/data decoded once and shrunk like the engine's large thumbnails (long side
1280), cycled to `--images`. Per analyzer it prints images/s (faces/s for face recognition, texts/s for MiniLM),
the batch size and threads, and the pipeline overhead: `run` time over the bare pass on batches already
decoded, resized and normalised (the model alone), minus one. The issue-6 target is <= 15 %.
- offline profile, real packaged weights: MobileNetV2 tags, MobileNetV2 embed, dlib faces, MiniLM text;
- full profile architectures with RANDOM weights (no hub here): OpenCLIP ViT-B-32 and MobileCLIP2-S0, BLIP
  base (BlipConfig() defaults, saved with save_pretrained and loaded through captions.load), insightface
  ArcFace-R50 (an IResNet-50 exported to ONNX, w600k_r50's shapes) behind a tiny stand-in SCRFD detector.
CUDA is used when torch sees a GPU (captions; onnxruntime-gpu for insightface), with larger batches; the
offline adapters and OpenCLIP run on the CPU either way (their adapters have no device option yet).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data"
RESULTS = ROOT / "benchmarks" / "ANALYZERS_RESULTS.md"
COMMAND = ".venv/bin/python benchmarks/analyzers.py"


@dataclass
class Row:
    analyzer: str
    model: str
    profile: str
    device: str
    batch: int
    threads: int
    items: int
    pipeline_s: float
    bare_s: float
    unit: str = "img"
    note: str = ""

    @property
    def overhead(self) -> float:
        return 100.0 * (self.pipeline_s / self.bare_s - 1.0)


def paired(pipeline: Callable[[], Any], bare: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(pipeline s, bare s): fastest of `repeats` each, alternating so both see the same background load.

    On a shared 2-core box the minimum is the least noisy estimate.
    """
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((pipeline, times[0]), (bare, times[1])):
            started = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - started)
    return min(times[0]), min(times[1])


def load_images(count: int) -> list[Image.Image]:
    from ingest.media import THUMB_LARGE, resize_to_fit

    decoded = []
    for path in sorted((DATA / "photos").iterdir()) + sorted((DATA / "faces").iterdir()):
        with Image.open(path) as img:
            decoded.append(resize_to_fit(img.convert("RGB"), THUMB_LARGE))
    return [decoded[i % len(decoded)] for i in range(count)]


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def threads() -> int:
    import torch

    return torch.get_num_threads()


# --------------------------------------------------------------------------------------------- offline profile

def bench_tags(images: list[Image.Image], repeats: int) -> Row:
    import torch

    from ingest.analyzers import tags

    model = tags.load({})
    net = model._model()
    tensors = [torch.from_numpy(tags.preprocess(chunk)) for chunk in batches(images, model.batch_size)]
    model.run(images[:model.batch_size])  # warm-up: weights loaded, allocator primed

    def bare() -> None:
        with torch.inference_mode():
            for batch in tensors:
                net(batch)

    return Row("tags", "MobileNetV2 ImageNet", "offline", "cpu", model.batch_size, threads(), len(images),
               *paired(lambda: model.run(images), bare, repeats))


def bench_embed_mobilenet(images: list[Image.Image], repeats: int) -> Row:
    import torch

    from ingest.analyzers import embed, tags

    model = embed.load({})
    net = model._tagger._model()
    tensors = [torch.from_numpy(tags.preprocess(chunk)) for chunk in batches(images, model.batch_size)]
    model.run(images[:model.batch_size])

    def bare() -> None:
        with torch.inference_mode():
            for batch in tensors:
                net.features(batch).mean(dim=(2, 3))

    return Row("embed", "MobileNetV2 features", "offline", "cpu", model.batch_size, threads(), len(images),
               *paired(lambda: model.run(images), bare, repeats))


def bench_faces_dlib(images: list[Image.Image], repeats: int) -> Row:
    from ingest.analyzers import faces

    model = faces.load({})
    loaded = model._load()
    dlib = loaded["dlib"]
    model.run(images[:1])
    # the model alone: HOG detection on arrays already decoded and scaled, descriptors of chips already aligned
    prepared = []
    for image in images:
        pixels = np.asarray(image, dtype=np.uint8)
        scale = min(1.0, model.max_side / max(pixels.shape[:2]))
        if scale < 1.0:
            size = (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale))
            pixels = np.asarray(image.resize(size, Image.Resampling.BILINEAR))
        prepared.append((pixels, 1 if max(pixels.shape[:2]) < model.upsample_below else 0))
    chips = []
    for image in images:
        pixels = np.asarray(image, dtype=np.uint8)
        for rect, _ in model._detect(pixels):
            shape = loaded["landmarks"](pixels, rect)
            chips.append(dlib.get_face_chip(pixels, shape, size=faces.CHIP_SIZE, padding=faces.CHIP_PADDING))

    def bare() -> None:
        for pixels, upsample in prepared:
            loaded["detector"].run(pixels, upsample, model.min_score)
        if chips:
            loaded["resnet"].compute_face_descriptor(chips)

    return Row("faces", "dlib HOG + ResNet", "offline", "cpu", len(images), 1, len(images),
               *paired(lambda: model.run(images), bare, repeats),
               note=f"{len(chips)} faces; dlib is single-threaded")


def bench_text(_: list[Image.Image], repeats: int) -> Row:
    import torch

    from ingest.analyzers import tags, text

    encoder = text.load_text_encoder({})
    tokenizer, model = encoder._load()
    labels = tags.tag_vocabulary()[:256]
    encoder.encode(labels[:8])
    tokenized = [tokenizer(chunk, padding=True, truncation=True, max_length=text.MAX_TOKENS, return_tensors="pt")
                 for chunk in batches(labels, encoder.batch_size)]

    def bare() -> None:
        with torch.inference_mode():
            for batch in tokenized:
                model(**batch)

    return Row("text", "all-MiniLM-L6-v2", "offline", "cpu", encoder.batch_size, threads(), len(labels),
               *paired(lambda: encoder.encode(labels), bare, repeats), unit="text",
               note="ImageNet label texts")


# --------------------------------------------------------------------------------------------- full profile, random weights

def _bench_clip(arch: str, images: list[Image.Image], repeats: int, batch: int) -> Row:
    import torch

    from ingest.analyzers.embed import ClipEmbedder

    model = ClipEmbedder({"model": arch, "batch_size": batch, "model_id": f"{arch}-random"})
    net, preprocess, tokenizer = model._load()
    note = ""
    if arch.startswith("MobileCLIP"):
        note = "reparameterized for inference by embed.ClipEmbedder"
    tensors = [torch.stack([preprocess(img) for img in chunk]) for chunk in batches(images, batch)]
    model.run(images[:batch])

    def bare() -> None:
        with torch.inference_mode():
            for chunk in tensors:
                net.encode_image(chunk)

    started = time.perf_counter()
    model.encode_text(["a dog on the beach"])
    query_ms = 1000 * (time.perf_counter() - started)
    note = "; ".join(filter(None, [note, f"one text query {query_ms:.0f} ms"]))
    return Row("embed", f"OpenCLIP {arch}", "full", "cpu", batch, threads(), len(images),
               *paired(lambda: model.run(images), bare, repeats), note=note)


def bench_clip_vitb32(images: list[Image.Image], repeats: int) -> Row:
    return _bench_clip("ViT-B-32", images, repeats, 32)


def bench_mobileclip2(images: list[Image.Image], repeats: int) -> Row:
    return _bench_clip("MobileCLIP2-S0", images, repeats, 32)


def build_blip_base(folder: Path) -> Path:
    """BLIP-base architecture (BlipConfig() defaults) with random weights and a BERT-sized synthetic vocabulary."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    config = BlipConfig()
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    words = specials + [f"w{i}" for i in range(config.text_config.vocab_size - len(specials))]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    BlipProcessor(image_processor=BlipImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)
    config.text_config.bos_token_id = words.index("[DEC]")
    config.text_config.sep_token_id = words.index("[SEP]")
    config.text_config.pad_token_id = 0
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).eval().save_pretrained(folder)
    return folder


def bench_blip(images: list[Image.Image], repeats: int) -> Row:
    import torch

    from ingest.analyzers import captions

    batch = 16 if cuda() else 4
    images = images[: 4 * batch if cuda() else batch]  # seconds per caption on 2 cores: one batch is enough
    tokens = 20
    with tempfile.TemporaryDirectory() as tmp:
        model = captions.load({"path": str(build_blip_base(Path(tmp) / "blip-base-random")), "batch_size": batch,
                               "max_new_tokens": tokens})
        processor, net, device = model._load()
    prepared = [processor(images=[model._downscale(img) for img in chunk], return_tensors="pt")["pixel_values"]
                .to(device, dtype=net.dtype) for chunk in batches(images, batch)]
    model.run(images[:batch])

    def bare() -> None:
        with torch.inference_mode():
            for pixels in prepared:
                net.generate(pixel_values=pixels, max_new_tokens=tokens, num_beams=1, do_sample=False)

    return Row("captions", "BLIP base (random)", "full", device, batch, threads(), len(images),
               *paired(lambda: model.run(images), bare, repeats),
               note=f"greedy, max {tokens} new tokens, 384 px")


def build_iresnet50_onnx(path: Path) -> None:
    """insightface's IResNet-50 (w600k_r50's architecture: 112 px in, 512-d out), random weights, dynamic batch."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, inp: int, out: int, stride: int) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.BatchNorm2d(inp), nn.Conv2d(inp, out, 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(out), nn.PReLU(out), nn.Conv2d(out, out, 3, stride, 1, bias=False),
                                      nn.BatchNorm2d(out))
            self.down = (nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                         if stride != 1 or inp != out else nn.Identity())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x) + self.down(x)

    layers, inp = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)], 64
    for width, blocks in ((64, 3), (128, 4), (256, 14), (512, 3)):
        for i in range(blocks):
            layers.append(Block(inp, width, 2 if i == 0 else 1))
            inp = width
    layers += [nn.BatchNorm2d(512), nn.Flatten(), nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512)]
    net = nn.Sequential(*layers).eval()
    torch.onnx.export(net, (torch.zeros(1, 3, 112, 112),), str(path), input_names=["input.1"],
                      output_names=["embedding"], dynamic_axes={"input.1": {0: "N"}, "embedding": {0: "N"}},
                      opset_version=13, dynamo=False)


def bench_insightface(images: list[Image.Image], repeats: int) -> Row:
    import warnings

    import onnxruntime

    from ingest.analyzers import faces_insight

    spec = importlib.util.spec_from_file_location("tiny_models", ROOT / "tests" / "test_captions_insightface_clip.py")
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)  # type: ignore[union-attr]
    gpu = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    batch = 64 if gpu else 32
    images = images if gpu else images[: max(4, len(images) // 4)]  # up to 8 faces each, ~0.1 s per face here
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = Path(tmp)
        tiny.build_tiny_scrfd(folder / "det_10g.onnx")
        build_iresnet50_onnx(folder / "w600k_r50.onnx")
        model = faces_insight.load({"path": str(folder), "max_faces": 8, "batch_size": batch})
        app = model._load()
        recognizer = app.models["recognition"]
        found = model.run(images)
        count = sum(len(f) for f in found)
        # the model alone: one session.run per batch of blobs made beforehand from the same aligned crops
        crops = []
        for image, faces in zip(images, found):
            bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
            crops += [faces_insight._align(bgr, np.zeros(4), np.asarray(f.landmarks, np.float32), 112) for f in faces]
        import cv2

        blobs = [cv2.dnn.blobFromImages(chunk, 1.0 / recognizer.input_std, (112, 112),
                                        (recognizer.input_mean,) * 3, swapRB=True) for chunk in batches(crops, batch)]

        def bare() -> None:
            for blob in blobs:
                recognizer.session.run(recognizer.output_names, {recognizer.input_name: blob})

        device = "cuda" if "CUDAExecutionProvider" in recognizer.session.get_providers() else "cpu"
        return Row("faces", "insightface ArcFace-R50 (random)", "full", device, batch, faces_insight.cpu_threads(),
                   count, *paired(lambda: model.run(images), bare, repeats), unit="face",
                   note="pipeline adds a tiny stand-in SCRFD + alignment; det_10g's own cost is not measured")


BENCHES: dict[str, Callable[[list[Image.Image], int], Row]] = {
    "tags": bench_tags, "embed": bench_embed_mobilenet, "faces": bench_faces_dlib, "text": bench_text,
    "clip": bench_clip_vitb32, "mobileclip": bench_mobileclip2, "blip": bench_blip, "insightface": bench_insightface,
}


# --------------------------------------------------------------------------------------------- report

def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{platform.machine()}, {cores} cores ({platform.processor() or 'cpu'}), {gpu}; Python "
            f"{platform.python_version()}, torch {torch.__version__}, {threads()} torch threads")


def _rate(value: float) -> str:
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def table(rows: list[Row], skipped: dict[str, str]) -> str:
    lines = ["| analyzer | model | profile | device | batch | threads | items | pipeline /s | bare /s | overhead | note |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        rate, bare = r.items / r.pipeline_s, r.items / r.bare_s
        lines.append(f"| {r.analyzer} | {r.model} | {r.profile} | {r.device} | {r.batch} | {r.threads} | {r.items} | "
                     f"{_rate(rate)} {r.unit}/s | {_rate(bare)} {r.unit}/s | {r.overhead:+.0f} % | {r.note} |")
    for name, reason in skipped.items():
        lines.append(f"| {name} | skipped | | | | | | | | | {reason} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=0, help="images per analyzer (default 32, 128 on a GPU)")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats per measurement; the best counts")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: never reach for a hub
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    from ingest.analyzers.base import set_torch_threads

    set_torch_threads()
    load_before = os.getloadavg()[0]  # a busy shared box skews every rate: say how busy it was
    count = args.images or (128 if cuda() else 32)
    images = load_images(count)
    wanted = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHES)
    rows, skipped = [], {}
    started = time.perf_counter()
    for name in wanted:
        print(f"-- {name} ...", flush=True)
        try:
            rows.append(BENCHES[name](images, args.repeats))
            r = rows[-1]
            print(f"   {_rate(r.items / r.pipeline_s)} {r.unit}/s (bare {_rate(r.items / r.bare_s)}), "
                  f"overhead {r.overhead:+.0f} %", flush=True)
        except Exception as error:  # one analyzer that cannot run here must not hide the others
            skipped[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
            traceback.print_exc()
    report = table(rows, skipped)
    print("\n" + report)
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    print(f"\n{machine()}; {load}; {time.perf_counter() - started:.0f} s in all")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = " (other jobs were sharing the cores: rates are low and noisy)" if load_before > cores else ""
    if not args.no_write:
        RESULTS.write_text(
            "# Analyzer throughput\n\n"
            f"Command: `{COMMAND}{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}`  \n"
            f"Machine: {machine()}; {load}{busy}  \n"
            f"Date: {dt.date.today().isoformat()}; {count} images (tests/data photos, large thumbnails, long side "
            f"<= 1280), best of {args.repeats}.\n\n"
            "pipeline = the adapter's `run` on decoded PIL images (preprocessing, batching, results); bare = the "
            "model's forward pass alone on batches decoded, resized and normalised beforehand; overhead = "
            "pipeline time / bare time - 1 (issue-6 target <= 15 %). `full` rows use RANDOM weights: the "
            "architectures' cost, not their output.\n\n" + report + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
