"""Image embeddings: OpenCLIP (image and text in one space) when a CLIP model is present, else MobileNetV2.

The offline profile has no CLIP weights, so its image vectors are MobileNetV2's pooled 1280-d features: they
power "photos like this one" and near-duplicates, not text search (text goes through tags there).
`text_aligned` tells the search tools which kind they got. OpenCLIP loads the same way for a user's real
model and for the tiny random-weight models the tests build: an architecture name plus a local state_dict.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ingest.analyzers.base import ModelNotFound, set_torch_threads


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class MobileNetEmbedder:
    """MobileNetV2 global-average-pooled features, L2-normalised."""

    family = "embed"
    text_aligned = False
    dim = 1280

    def __init__(self, spec: dict | None = None) -> None:
        from ingest.analyzers import tags

        self.spec = dict(spec or {})
        self.model_id = "mobilenet_v2-features"
        self.batch_size = int(self.spec.get("batch_size", 16))
        self._tagger = tags.load(self.spec)
        self._lock = threading.Lock()

    def run(self, images: list[Image.Image]) -> list[np.ndarray]:
        import torch

        from ingest.analyzers.tags import preprocess

        net = self._tagger._model()
        out: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.from_numpy(preprocess(images[start:start + self.batch_size]))
            with torch.inference_mode():
                features = net.features(batch).mean(dim=(2, 3))
            out.extend(_normalise(features.numpy()))
        return out


class ClipEmbedder:
    """OpenCLIP image and text towers; `spec`: model (architecture), path (local weights) or pretrained tag."""

    family = "embed"
    text_aligned = True

    def __init__(self, spec: dict) -> None:
        self.spec = dict(spec)
        self.arch = str(spec["model"])
        self.weights = spec.get("path") or spec.get("pretrained")
        self.model_id = str(spec.get("model_id") or f"openclip-{self.arch}-{Path(str(self.weights)).stem}")
        self.batch_size = int(spec.get("batch_size", 32))
        self._loaded: tuple[Any, Any, Any] | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any, Any]:
        with self._lock:
            if self._loaded is None:
                import open_clip

                set_torch_threads(self.spec)
                if self.spec.get("path") and not Path(self.spec["path"]).expanduser().exists():
                    raise ModelNotFound(f"CLIP weights not found: {self.spec['path']}")
                if self.spec.get("config"):  # a custom architecture: JSON named like the model (tests' tiny CLIP)
                    open_clip.add_model_config(str(Path(self.spec["config"]).expanduser()))
                pretrained = str(Path(self.weights).expanduser()) if self.spec.get("path") else self.weights
                model, _, preprocess = open_clip.create_model_and_transforms(self.arch, pretrained=pretrained)
                self._loaded = (model.eval(), preprocess, open_clip.get_tokenizer(self.arch))
            return self._loaded

    @property
    def dim(self) -> int:
        model, _, _ = self._load()
        return int(model.visual.output_dim)

    def run(self, images: list[Image.Image]) -> list[np.ndarray]:
        import torch

        model, preprocess, _ = self._load()
        out: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([preprocess(img.convert("RGB")) for img in images[start:start + self.batch_size]])
            with torch.inference_mode():
                out.extend(_normalise(model.encode_image(batch).float().numpy()))
        return out

    def encode_text(self, texts: list[str]) -> np.ndarray:
        import torch

        model, _, tokenizer = self._load()
        with torch.inference_mode():
            return _normalise(model.encode_text(tokenizer(texts)).float().numpy())


def load(spec: dict | None = None) -> MobileNetEmbedder | ClipEmbedder:
    """CLIP when the spec names one that is present (a local path or fetched weights), else MobileNetV2."""
    spec = dict(spec or {})
    if spec.get("kind") == "openclip" or spec.get("pretrained") or spec.get("path"):
        weights = spec.get("path")
        if weights and Path(weights).expanduser().exists():
            return ClipEmbedder(spec)
        if spec.get("pretrained") and not weights:
            from tools.models import models_dir

            local = models_dir() / str(spec["model"]).replace("/", "--") / "open_clip_model.safetensors"
            if local.exists():
                return ClipEmbedder(dict(spec, path=str(local)))
        raise ModelNotFound(f"CLIP model {spec.get('model')} is not on this machine "
                            "(photo-engine models fetch, or set a local path in models.yaml)")
    return MobileNetEmbedder(spec)
