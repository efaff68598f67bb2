"""Search latency, recall@10 and memory on synthetic libraries, against exact numpy search in the same run.

    .venv/bin/python benchmarks/search.py                       # 10k and 100k items, a few minutes on 2 cores
    .venv/bin/python benchmarks/search.py --sizes 10000,100000,1000000 --indexes FLAT,HNSW
    .venv/bin/python benchmarks/search.py --markdown benchmarks/SEARCH_RESULTS.md

Each library is a real catalog (SQLite, one Media row per item) plus a Milvus Lite collection of 512-d
vectors, written exactly as ingest writes them. Real embeddings cluster, so the vectors are a gaussian
mixture: a few hundred event centres with Zipf-like sizes, members at cosine ~0.75 to each other; text
queries sit near a centre but across a shared "modality gap" offset, as CLIP text vectors do.

Measured per size and Milvus index (FLAT exact; HNSW; IVF_FLAT):
- milvus: the bare `VectorStore.search_images` call (topk 10) for a text vector, with and without a filter;
- e2e: `tools.search.search()` as the CLI/agent call it, including the text encoders (MiniLM for tags +
  the OpenCLIP ViT-B-32 text tower, random weights: same compute as the real one), SQL filters and the
  result rows: text, text + scalar filter (videos of one year, ~0.5% of items), text + catalog filter
  (one place, ~2% of items, passed to Milvus as an id list), and similar-to-a-library-file;
- numpy: the same four queries by exact brute force over an in-memory matrix (same text encoding);
- recall@10 of each against the exact numpy top 10 under the same filter; RSS of the process.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIM = 512
MODEL_ID = "bench-openclip-ViT-B-32"
CITIES = [f"City{i:02d}" for i in range(50)]
TEXTS = ["a dog on the beach", "birthday cake with candles", "snowy mountains", "my daughter playing football",
         "sunset over the sea", "a red car", "people at a wedding", "a cat sleeping on the sofa"]


# --------------------------------------------------------------------------------------------- data
@dataclass
class Library:
    n: int
    vectors: np.ndarray  # (n, DIM) unit rows; row i is media id i + 1
    kind: np.ndarray  # 0 photo, 1 video
    year: np.ndarray
    city: np.ndarray  # index into CITIES
    centres: np.ndarray
    gap: np.ndarray


def make_library(n: int, centres: int, seed: int = 7) -> Library:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, DIM)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, centres + 1) ** 0.8  # a few big events, many small ones
    labels = rng.choice(centres, size=n, p=weights / weights.sum())
    v = c[labels] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    gap = rng.standard_normal(DIM).astype(np.float32)
    gap /= np.linalg.norm(gap)
    city_w = 1.0 / np.arange(1, len(CITIES) + 1) ** 0.5
    return Library(n=n, vectors=v.astype(np.float32), kind=(rng.random(n) < 0.1).astype(np.int8),
                   year=rng.integers(2005, 2025, size=n), city=rng.choice(len(CITIES), size=n, p=city_w / city_w.sum()),
                   centres=c, gap=gap)


def text_queries(lib: Library, count: int, seed: int = 11) -> np.ndarray:
    """Near a random centre, offset by the shared text/image gap (CLIP text-image cosines are ~0.3)."""
    rng = np.random.default_rng(seed)
    picks = lib.centres[rng.integers(0, len(lib.centres), size=count)]
    q = picks + 0.9 * lib.gap + 1.0 * rng.standard_normal((count, DIM)).astype(np.float32) / np.sqrt(DIM)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def build_catalog(lib: Library, folder: Path) -> Any:
    """Catalog rows and Milvus vectors as ingest writes them; returns the catalog Library."""
    from sqlalchemy import insert

    from catalog.db import engine_for
    from catalog.models import Media, Source
    from catalog.settings import Library as CatalogLibrary
    from catalog.vectors import VectorStore, image_vector_id, wallclock_ts

    catalog = CatalogLibrary.at(folder).ensure()
    engine = engine_for(catalog.database_url)
    rng = np.random.default_rng(3)
    taken = [datetime(int(y), 1, 1) + timedelta(seconds=int(s)) for y, s in
             zip(lib.year, rng.integers(0, 365 * 86400, size=lib.n))]
    rows = []
    for i in range(lib.n):
        city = CITIES[lib.city[i]]
        path = f"/bench/{'videos' if lib.kind[i] else 'photos'}/{i + 1:07d}.{'mp4' if lib.kind[i] else 'jpg'}"
        rows.append({"id": i + 1, "source_id": 1, "path": path, "path_bytes": path.encode(),
                     "kind": "video" if lib.kind[i] else "photo", "state": "active", "content_hash": f"{i:064x}",
                     "taken_at": taken[i], "year": taken[i].year, "month": taken[i].month,
                     "place": f"{city}, Region, XX", "city": city, "region": "Region", "country": "XX",
                     "size": 1, "mtime_ns": 0})
    with engine.begin() as connection:
        connection.execute(insert(Source), [{"id": 1, "path": "/bench"}])
        for start in range(0, len(rows), 20_000):
            connection.execute(insert(Media), rows[start:start + 20_000])
    store = VectorStore(catalog.milvus_uri)
    collection = store.ensure_images(MODEL_ID, DIM)
    for start in range(0, lib.n, 5000):
        stop = min(start + 5000, lib.n)
        store.client.insert(collection, [
            {"id": image_vector_id(i + 1, 0 if lib.kind[i] else None), "media_id": i + 1,
             "frame_id": i + 1 if lib.kind[i] else -1, "time": 0.0, "kind": rows[i]["kind"],
             "taken_ts": wallclock_ts(taken[i]), "year": taken[i].year, "month": taken[i].month,
             "vector": lib.vectors[i].tolist()} for i in range(start, stop)])
    store.client.flush(collection)
    store.close()
    return catalog


def set_index(store: Any, collection: str, kind: str, n: int) -> str:
    """Swap the collection's vector index (release, drop, create, load); returns a label with its params."""
    client = store.client
    client.load_collection(collection)
    client.release_collection(collection)
    for name in client.list_indexes(collection) or ["vector"]:  # a fresh client may list none: default name
        try:
            client.drop_index(collection, name)
        except Exception:  # noqa: BLE001 - no such index
            pass
    params = store.client.prepare_index_params()
    extra: dict[str, Any] = {}
    if kind == "HNSW":
        extra = {"M": 16, "efConstruction": 200}
    elif kind == "IVF_FLAT":
        extra = {"nlist": int(4 * np.sqrt(n))}
    params.add_index(field_name="vector", index_type=kind, metric_type="COSINE", params=extra)
    client.create_index(collection, params)
    client.load_collection(collection)
    return kind + (f"({', '.join(f'{k}={v}' for k, v in extra.items())})" if extra else "")


# --------------------------------------------------------------------------------------------- encoders
class ClipTextTower:
    """The OpenCLIP ViT-B-32 text tower (random weights: identical compute, no download)."""

    def __init__(self, threads: int) -> None:
        import open_clip
        import torch

        torch.set_num_threads(threads)
        model, _, _ = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
        self.model, self.tokenizer = model.eval(), open_clip.get_tokenizer("ViT-B-32")
        del self.model.visual

    def encode_full(self, texts: list[str]) -> np.ndarray:
        """OpenCLIP's own `encode_text`: the full 77-token context (the reference)."""
        import torch

        with torch.inference_mode():
            return self.model.encode_text(self.tokenizer(texts)).float().numpy()

    def encode(self, texts: list[str]) -> np.ndarray:
        """What ClipEmbedder.encode_text runs: the tower stopped at the end-of-text token, same vector."""
        import torch

        from ingest.analyzers.embed import encode_text_to_eot

        with torch.inference_mode():
            return encode_text_to_eot(self.model, self.tokenizer(texts)).float().numpy()


class BenchEmbedder:
    """A text-aligned embedder for tools.search: real text-tower compute, then the prepared query vector."""

    text_aligned = True
    model_id = MODEL_ID
    dim = DIM

    def __init__(self, tower: ClipTextTower) -> None:
        self.tower = tower
        self.next: np.ndarray | None = None

    def encode_text(self, texts: list[str]) -> np.ndarray:
        self.tower.encode(texts)
        assert self.next is not None
        return self.next[None, :]

    def run(self, images: list[Any]) -> list[np.ndarray]:
        raise NotImplementedError("the benchmark's image queries are library files (stored vectors)")


# --------------------------------------------------------------------------------------------- measuring
@dataclass
class Row:
    size: int
    engine: str
    query: str
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    recalls: list[float] = field(default_factory=list)
    rss_mb: float = 0.0

    def p(self, q: float) -> float:
        return float(np.percentile(self.times, q)) * 1000 if self.times else float("nan")

    @property
    def cpu_p50(self) -> float:
        """CPU time of the whole process per query: what wall time is on an idle machine for 1-thread work."""
        return float(np.percentile(self.cpu, 50)) * 1000 if self.cpu else float("nan")

    @property
    def recall(self) -> float:
        return statistics.fmean(self.recalls) if self.recalls else float("nan")


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def exact_top(lib: Library, q: np.ndarray, mask: np.ndarray | None, k: int = 10,
              exclude: int | None = None) -> list[int]:
    """Media ids of the exact top k (numpy), under a boolean mask."""
    idx = np.nonzero(mask)[0] if mask is not None else None
    matrix = lib.vectors[idx] if idx is not None else lib.vectors
    scores = matrix @ q
    if exclude is not None:
        hit = np.nonzero((idx if idx is not None else np.arange(lib.n)) == exclude - 1)[0]
        scores[hit] = -np.inf
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k] if k else np.array([], dtype=int)
    top = top[np.argsort(-scores[top])]
    rows = idx[top] if idx is not None else top
    return [int(r) + 1 for r in rows]


def recall(got: list[int], truth: list[int]) -> float:
    return len(set(got) & set(truth)) / len(truth) if truth else 1.0


def timed(row: Row, call: Callable[[], list[int]], truth: list[int]) -> None:
    start, cpu = time.perf_counter(), time.process_time()
    got = call()
    row.times.append(time.perf_counter() - start)
    row.cpu.append(time.process_time() - cpu)
    row.recalls.append(recall(got[:10], truth))


def run_size(n: int, args: argparse.Namespace, tower: ClipTextTower, encoder: Any, rows: list[Row],
             work: Path, label_cache: Path) -> None:
    from catalog import vector_snapshot as snapshots
    from catalog.vectors import VectorStore, image_collection
    from tools import search as search_mod

    print(f"\n== {n:,} items: generating and writing the library ...", flush=True)
    lib = make_library(n, args.centres)
    t0 = time.perf_counter()
    catalog = build_catalog(lib, work / f"lib{n}")
    print(f"   catalog + Milvus insert: {time.perf_counter() - t0:.1f} s", flush=True)
    (catalog.root / "cache").mkdir(exist_ok=True)
    for npy in label_cache.glob("*.npy"):
        shutil.copy(npy, catalog.root / "cache" / npy.name)
    queries = text_queries(lib, args.queries)
    rng = np.random.default_rng(5)
    years = rng.integers(2005, 2025, size=args.queries)
    cities = rng.integers(0, 10, size=args.queries)  # the ten biggest places: ~2% of items each
    image_ids = rng.choice(np.nonzero(lib.kind == 0)[0] + 1, size=args.queries)  # photos: one vector each
    masks = {"video+year": [(lib.kind == 1) & (lib.year == y) for y in years],
             "place": [lib.city == c for c in cities]}
    truth = {"text": [exact_top(lib, q, None) for q in queries],
             "video+year": [exact_top(lib, q, m) for q, m in zip(queries, masks["video+year"])],
             "place": [exact_top(lib, q, m) for q, m in zip(queries, masks["place"])],
             "image": [exact_top(lib, lib.vectors[i - 1], None, exclude=int(i)) for i in image_ids]}
    text = [TEXTS[i % len(TEXTS)] for i in range(args.queries)]

    # numpy brute force: the baseline, same text encoding
    base = {name: Row(n, "numpy exact", name) for name in ("text", "video+year", "place", "image")}
    matrix = lib.vectors
    for i, q in enumerate(queries):
        def numpy_text(q: np.ndarray = q, i: int = i) -> list[int]:
            tower.encode([text[i]])
            return exact_top(lib, q, None)

        def numpy_filtered(q: np.ndarray = q, i: int = i) -> list[int]:
            tower.encode([text[i]])
            return exact_top(lib, q, (lib.kind == 1) & (lib.year == years[i]))

        def numpy_place(q: np.ndarray = q, i: int = i) -> list[int]:
            tower.encode([text[i]])
            return exact_top(lib, q, lib.city == cities[i])

        timed(base["text"], numpy_text, truth["text"][i])
        timed(base["video+year"], numpy_filtered, truth["video+year"][i])
        timed(base["place"], numpy_place, truth["place"][i])
        timed(base["image"], lambda i=i: exact_top(lib, matrix[image_ids[i] - 1], None, exclude=int(image_ids[i])),
              truth["image"][i])
    for row in base.values():
        row.rss_mb = rss_mb()
        rows.append(row)

    store = VectorStore(catalog.milvus_uri)
    collection = image_collection(MODEL_ID)
    embedder = BenchEmbedder(tower)
    models = search_mod.SearchModels(text_encoder=encoder, image_embedder=embedder)
    search_mod._STORES[catalog.milvus_uri] = store  # the e2e path uses this same open client
    embedder.next = queries[0]

    def e2e_rows(label: str) -> list[Row]:
        e2e = {name: Row(n, label, name) for name in ("text", "video+year", "place", "image")}
        for i, q in enumerate(queries):
            for name, extra in (("text", {}), ("video+year", {"kind": "video", "year": int(years[i])}),
                                ("place", {"place": CITIES[cities[i]]})):
                embedder.next = q

                def e2e_call(extra: dict = extra, i: int = i) -> list[int]:
                    outcome = search_mod.search(catalog, models=models, text=text[i], limit=10, **extra)
                    return [r["media_id"] for r in outcome.results]

                timed(e2e[name], e2e_call, truth[name][i])
            timed(e2e["image"], lambda i=i: [r["media_id"] for r in search_mod.search(
                catalog, models=models, image=int(image_ids[i]), limit=10).results], truth["image"][i])
        for row in e2e.values():
            row.rss_mb = rss_mb()
        return list(e2e.values())

    # the default path for a local library: exact numpy over the memory-mapped snapshot of the collection
    os.environ.pop(search_mod.VECTOR_CACHE_ENV, None)
    t0 = time.perf_counter()
    search_mod.search(catalog, models=models, text="warm up", limit=10)  # builds the snapshot from Milvus
    built = time.perf_counter() - t0
    snapshots.clear_cache()
    t0 = time.perf_counter()
    search_mod.vector_snapshot(catalog, collection)
    reopened = time.perf_counter() - t0
    print(f"   snapshot: built from Milvus in {built:.1f} s, reopened (mmap, as a new process would) in "
          f"{reopened * 1000:.0f} ms", flush=True)
    snapshot_rows = e2e_rows("e2e snapshot (numpy, default)")
    rows.extend(snapshot_rows)
    print_rows(list(base.values()) + snapshot_rows, flush=True)
    snapshots.clear_cache()
    search_mod._STORES[catalog.milvus_uri] = store  # the snapshot build closed it; it reopens on use

    os.environ[search_mod.VECTOR_CACHE_ENV] = "off"  # the same calls straight through Milvus Lite
    for index in args.indexes:
        t0 = time.perf_counter()
        label = set_index(store, collection, index, n)
        print(f"   index {label}: built and loaded in {time.perf_counter() - t0:.1f} s", flush=True)
        bare = {name: Row(n, f"milvus {label}", name) for name in ("text", "video+year")}
        for warm in range(3):
            store.search_images(collection, queries[warm].tolist(), 10)
        for i, q in enumerate(queries):
            timed(bare["text"], lambda q=q: [h["media_id"] for h in store.search_images(collection, q.tolist(), 10)],
                  truth["text"][i])
            expr = f'kind == "video" and year == {int(years[i])}'
            timed(bare["video+year"],
                  lambda q=q, expr=expr: [h["media_id"] for h in store.search_images(collection, q.tolist(), 10, expr)],
                  truth["video+year"][i])
        for row in bare.values():
            row.rss_mb = rss_mb()
        milvus_rows = list(bare.values()) + e2e_rows(f"e2e milvus {label}")
        rows.extend(milvus_rows)
        print_rows(milvus_rows, flush=True)
    os.environ.pop(search_mod.VECTOR_CACHE_ENV, None)
    search_mod.close_stores()
    for npy in (catalog.root / "cache").glob("*.npy"):
        shutil.copy(npy, label_cache / npy.name)
    shutil.rmtree(catalog.root, ignore_errors=True)
    gc.collect()


def print_rows(rows: list[Row], flush: bool = False) -> None:
    print(f"   {'size':>9} {'engine':<40} {'query':<11} {'p50 ms':>8} {'p95 ms':>8} {'cpu p50':>8} {'recall@10':>9} "
          f"{'RSS MB':>7}")
    for r in rows:
        print(f"   {r.size:>9,} {r.engine:<40} {r.query:<11} {r.p(50):>8.1f} {r.p(95):>8.1f} {r.cpu_p50:>8.1f} "
              f"{r.recall:>9.3f} {r.rss_mb:>7.0f}", flush=flush)


def markdown(rows: list[Row], args: argparse.Namespace, seconds: float, load: tuple[float, float]) -> str:
    lines = ["# Search benchmark results", "",
             f"Command: `.venv/bin/python benchmarks/search.py {' '.join(sys.argv[1:])}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs ({_cpu_name()}), Python "
             f"{platform.python_version()}, torch threads {args.threads}; load average {load[0]:.1f} before / {load[1]:.1f} "
             f"after (other jobs on the machine)  ",
             f"Vectors: {DIM}-d, gaussian mixture around {args.centres} centres; {args.queries} queries per row; "
             f"text encoding = OpenCLIP ViT-B-32 text tower, random weights (the synthetic library has no tags, so "
             f"the MiniLM tag search is skipped, as in any library without tags); run took "
             f"{seconds / 60:.1f} min.", "",
             "| items | engine | query | p50 ms | p95 ms | CPU ms p50 | recall@10 | RSS MB |",
             "|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.size:,} | {r.engine} | {r.query} | {r.p(50):.1f} | {r.p(95):.1f} | {r.cpu_p50:.1f} | "
                     f"{r.recall:.3f} | {r.rss_mb:.0f} |")
    lines += ["", "Ratios (e2e p50 / numpy exact p50, same query, same run):", ""]
    for r in rows:
        if r.engine.startswith("e2e"):
            base = next((b for b in rows if b.size == r.size and b.engine == "numpy exact" and b.query == r.query), None)
            if base and base.p(50) > 0:
                lines.append(f"- {r.size:,} {r.engine} {r.query}: {r.p(50) / base.p(50):.2f}x")
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated library sizes")
    parser.add_argument("--indexes", default="FLAT,HNSW,IVF_FLAT", help="Milvus index types to compare")
    parser.add_argument("--queries", type=int, default=40, help="queries per measurement")
    parser.add_argument("--centres", type=int, default=300, help="clusters in the synthetic embeddings")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the text encoders")
    parser.add_argument("--work", default=None, help="folder for the temporary libraries")
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    args = parser.parse_args()
    args.indexes = [i.strip().upper() for i in args.indexes.split(",") if i.strip()]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)  # Milvus Lite lacks AllocTimestamp: noise
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    from ingest.analyzers.text import load_text_encoder

    tower, encoder = ClipTextTower(args.threads), load_text_encoder({"threads": args.threads})
    encoder.encode(["warm up"])
    import torch

    torch.set_num_threads(args.threads)  # MiniLM's loader sets threads from its spec; keep one setting
    from tools import search as search_mod

    # Synthetic vectors have no calibrated text-image cosine scale: measure retrieval, not the relevance cutoff
    # (with real CLIP a filtered query legitimately returns fewer files when the rest are unrelated).
    search_mod.CLIP_FLOOR = -1.0
    rows: list[Row] = []
    for label, encode in (("encoder: CLIP ViT-B-32 text, 77 tokens", tower.encode_full),
                          ("encoder: CLIP ViT-B-32 text, cut at EOT (used)", tower.encode),
                          ("encoder: MiniLM-L6 (offline tags)", encoder.encode)):
        row = Row(0, label, "text")
        for i in range(args.queries):
            timed(row, lambda i=i: (encode([TEXTS[i % len(TEXTS)]]), [])[1], [])
        row.rss_mb = rss_mb()
        rows.append(row)
    full, cut = tower.encode_full(TEXTS), tower.encode(TEXTS)
    print(f"   truncated text tower max |diff| vs full: {float(np.abs(full - cut).max()):.2e}")
    print_rows(rows, flush=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="search-bench-"))
    label_cache = work / "label-cache"
    label_cache.mkdir(parents=True, exist_ok=True)
    for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
        run_size(n, args, tower, encoder, rows, work, label_cache)
    seconds = time.perf_counter() - started
    print("\n== all results")
    print_rows(rows)
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows, args, seconds, (load_before, os.getloadavg()[0])))
        print(f"wrote {args.markdown}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
