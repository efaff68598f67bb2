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

from ingest.analyzers.base import ModelNotFound, default_batch_size, inference_device, set_torch_threads


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
        self.batch_size = default_batch_size(self.spec, cpu=16, gpu=128)
        self._tagger = tags.load(self.spec)
        self._lock = threading.Lock()

    def run(self, images: list[Image.Image]) -> list[np.ndarray]:
        return self._forward(images, None)[0]

    def shares_backbone(self, tagger: Any) -> bool:
        """True when `tagger` is the MobileNetV2 tagger on the same weights: one forward pass serves both."""
        from ingest.analyzers.tags import TagModel

        return (isinstance(tagger, TagModel) and tagger.weights == self._tagger.weights
                and tagger.device == self._tagger.device)

    def run_with_tags(self, images: list[Image.Image], tagger: Any) -> tuple[list[np.ndarray], list[Any]]:
        """Vectors and tags from one pass: the tagger's logits are its classifier over these pooled features,
        so running both stages separately would compute the whole network twice."""
        assert self.shares_backbone(tagger)
        return self._forward(images, tagger)

    def _forward(self, images: list[Image.Image], tagger: Any) -> tuple[list[np.ndarray], list[Any]]:
        import torch

        from ingest.analyzers.tags import preprocess

        net = self._tagger._model()
        vectors: list[np.ndarray] = []
        tags: list[Any] = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.from_numpy(preprocess(images[start:start + self.batch_size])).to(self._tagger.device)
            with torch.inference_mode():
                features = net.features(batch).mean(dim=(2, 3))  # torchvision's pooling, before the classifier
                if tagger is not None:
                    tags.extend(tagger.labels_from_logits(net.classifier(features).float().cpu()))
            vectors.extend(_normalise(features.float().cpu().numpy()))
        return vectors, tags


class ClipEmbedder:
    """OpenCLIP image and text towers; `spec`: model (architecture), path (local weights) or pretrained tag."""

    family = "embed"
    text_aligned = True

    def __init__(self, spec: dict) -> None:
        self.spec = dict(spec)
        self.arch = str(spec["model"])
        self.weights = spec.get("path") or spec.get("pretrained")
        # named by the pretrained tag when there is one: a fetched file is always "open_clip_model.safetensors"
        tag = spec.get("pretrained") or (Path(str(spec["path"])).stem if spec.get("path") else "random")
        self.model_id = str(spec.get("model_id") or f"openclip-{self.arch}-{tag}")
        self.batch_size = default_batch_size(spec, cpu=32, gpu=256)
        self.device = inference_device(spec)
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
                model = model.eval()
                if self.arch.startswith("MobileCLIP"):
                    # MobileOne/FastViT blocks train as parallel branches; their inference form folds them into
                    # one conv each (same outputs, several times faster on CPU; MobileCLIP's own instructions)
                    from timm.utils import reparameterize_model

                    model = reparameterize_model(model)
                self._loaded = (model.to(self.device), preprocess, open_clip.get_tokenizer(self.arch))
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
                out.extend(_normalise(model.encode_image(batch.to(self.device)).float().cpu().numpy()))
        return out

    def encode_text(self, texts: list[str]) -> np.ndarray:
        import torch

        model, _, tokenizer = self._load()
        tokens = tokenizer(texts).to(self.device)
        with torch.inference_mode():
            encoded = encode_text_to_eot(model, tokens)
            if encoded is None:
                encoded = model.encode_text(tokens)
            return _normalise(encoded.float().cpu().numpy())


def encode_text_to_eot(model: Any, tokens: Any) -> Any | None:
    """OpenCLIP's `encode_text`, stopped at the last end-of-text token instead of the full 77-token context.

    A search query is a few words, yet `encode_text` runs all 77 positions (137 ms for ViT-B-32 on 2 cores).
    The causal mask means positions after EOT never influence EOT's output, so cutting there gives the same
    vector (max difference ~1e-6) in ~48 ms. Returns None for towers where that reasoning does not hold (no
    causal mask, pooling other than at EOT, custom text towers); the caller then runs the full tower.
    """
    import torch

    mask = getattr(model, "attn_mask", None)
    if (mask is None or getattr(model, "text_pool_type", "argmax") != "argmax"
            or not hasattr(model, "token_embedding") or getattr(model, "text_projection", None) is None):
        return None
    length = int(tokens.argmax(dim=-1).max()) + 1  # EOT has the largest id in CLIP's vocabulary
    tokens = tokens[:, :length]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:length].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=mask[:length, :length]))
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    projection = model.text_projection
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


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
