"""Faces in the `full` profile: insightface (SCRFD detector + ArcFace 512-d recognition) over ONNX Runtime.

A model is a folder of `*.onnx` files in insightface's `buffalo_l` layout (det_10g, w600k_r50, 1k3d68,
2d106det, genderage); insightface infers each file's role from its input/output shapes, so the tests' tiny
random-weight ONNX files load through exactly this code. Only detection and recognition are loaded: the
landmark and gender/age models would cost a pass per face for nothing we store. Detection runs per image;
every face of a batch is aligned and described in one recognition call. Results are `faces.FaceResult`, the
same as the dlib analyzer, with 512-d L2-normalised embeddings and insightface's 5 points (eyes, nose tip,
mouth corners).
"""

from __future__ import annotations

import math
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ingest.analyzers.base import ModelNotFound, cpu_threads, to_rgb
from ingest.analyzers.faces import FaceResult, face_quality

MODULES = ("detection", "recognition")
DEFAULT_DET_SIZE = (640, 640)  # SCRFD's training size; insightface 2.x would also run 128x128 by default
DEFAULT_DET_THRESH = 0.5


def providers(spec: dict[str, Any] | None = None) -> list[str]:
    """`spec['providers']`, else CUDA first when this onnxruntime has it, CPU always last."""
    wanted = (spec or {}).get("providers")
    if wanted:
        return [str(p) for p in wanted]
    import onnxruntime

    available = onnxruntime.get_available_providers()
    chosen = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
    return chosen + ["CPUExecutionProvider"]


def model_folder(spec: dict[str, Any]) -> Path:
    """The folder holding the `*.onnx` files: `spec['path']`, else `models_dir()/<model>` (after a fetch).

    Zips from the model zoo sometimes hold one subfolder; that subfolder is used when the top has no ONNX.
    """
    if spec.get("path"):
        folder = Path(str(spec["path"])).expanduser()
        where = "models.yaml path"
    else:
        from tools.models import models_dir

        name = str(spec.get("model") or "buffalo_l")
        folder = models_dir() / name.replace("/", "--")
        where = "photo-engine models fetch"
    if folder.is_dir() and not any(folder.glob("*.onnx")):
        inner = [d for d in folder.iterdir() if d.is_dir() and any(d.glob("*.onnx"))]
        if len(inner) == 1:
            folder = inner[0]
    if not folder.is_dir() or not any(folder.glob("*.onnx")):
        raise ModelNotFound(f"insightface model folder {str(folder)!r} has no *.onnx files ({where})")
    return folder


class InsightFaceModel:
    """Detect, align and describe faces with insightface; ONNX sessions load on the first `run`.

    spec keys: path or model (folder), det_size ([w, h]), det_thresh, max_faces (0 = all), batch_size
    (faces per recognition call), providers, threads, model_id.
    """

    family = "faces"

    def __init__(self, folder: Path, spec: dict[str, Any] | None = None) -> None:
        self.folder = folder
        self.spec = dict(spec or {})
        self.model_id = str(self.spec.get("model_id") or f"insightface-{folder.name}")
        self.det_size = tuple(int(v) for v in self.spec.get("det_size", DEFAULT_DET_SIZE))
        self.det_thresh = float(self.spec.get("det_thresh", DEFAULT_DET_THRESH))
        self.max_faces = int(self.spec.get("max_faces", 0))
        self.batch_size = int(self.spec.get("batch_size", 32))
        self._app: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._app is None:
                try:
                    import onnxruntime
                    from insightface.app import FaceAnalysis
                except ImportError as error:
                    raise ModelNotFound(f"insightface is not usable ({error}); pip install onnxruntime "
                                        "opencv-python-headless scikit-image && pip install --no-deps "
                                        "insightface") from None
                chosen = providers(self.spec)
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = cpu_threads(self.spec)
                app = FaceAnalysis(name=str(self.folder), allowed_modules=list(MODULES), providers=chosen,
                                   sess_options=options)
                if "recognition" not in app.models:
                    raise ModelNotFound(f"{self.folder} has a face detector but no recognition model "
                                        "(an ONNX with a square >=112 px input, e.g. w600k_r50.onnx)")
                ctx_id = 0 if chosen[0] == "CUDAExecutionProvider" else -1
                app.prepare(ctx_id=ctx_id, det_thresh=self.det_thresh, det_size=self.det_size)
                self._app = app
            return self._app

    @property
    def dim(self) -> int:
        shape = self._load().models["recognition"].output_shape
        return int(shape[-1])

    def run(self, images: list[Image.Image]) -> list[list[FaceResult]]:
        """Faces per image, best first; recognition runs once per `batch_size` faces of the whole batch."""
        app = self._load()
        detector, recognizer = app.models["detection"], app.models["recognition"]
        found: list[list[tuple[np.ndarray, float, np.ndarray | None, np.ndarray]]] = []
        crops: list[np.ndarray] = []
        for image in images:
            bgr = np.ascontiguousarray(np.asarray(to_rgb(image), dtype=np.uint8)[:, :, ::-1])
            boxes, points = detector.detect(bgr, max_num=self.max_faces)
            faces = []
            for i in range(boxes.shape[0]):
                kps = points[i] if points is not None else None
                crop = _align(bgr, boxes[i, :4], kps, recognizer.input_size[0])
                faces.append((boxes[i, :4], float(boxes[i, 4]), kps, crop))
                crops.append(crop)
            found.append(faces)
        vectors = self._describe(recognizer, crops)
        results, k = [], 0
        for image, faces in zip(images, found):
            per_image = []
            for box, score, kps, crop in faces:
                face = _result(box, score, kps, crop, vectors[k], image.size)
                k += 1
                if face.box[2] > 0 and face.box[3] > 0:  # SCRFD pads the frame; a box wholly in the padding is no face
                    per_image.append(face)
            results.append(sorted(per_image, key=lambda face: -face.score))
        return results

    def _describe(self, recognizer: Any, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        step = self.batch_size if _dynamic_batch(recognizer) else 1
        chunks = [np.asarray(recognizer.get_feat(crops[i:i + step]), dtype=np.float32).reshape(
            len(crops[i:i + step]), -1) for i in range(0, len(crops), step)]
        vectors = np.concatenate(chunks)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _dynamic_batch(recognizer: Any) -> bool:
    first = recognizer.input_shape[0]
    return not isinstance(first, int) or first != 1


def _align(bgr: np.ndarray, box: np.ndarray, kps: np.ndarray | None, size: int) -> np.ndarray:
    """ArcFace's 5-point similarity warp; a detector without points gets a square box crop instead."""
    if kps is not None:
        from insightface.utils import face_align

        with warnings.catch_warnings():  # scikit-image 0.26 deprecates the estimate() insightface calls
            warnings.simplefilter("ignore", FutureWarning)
            return face_align.norm_crop(bgr, landmark=np.asarray(kps, dtype=np.float32), image_size=size)
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    rgb = Image.fromarray(bgr[:, :, ::-1])
    crop = rgb.crop((round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)))
    return np.ascontiguousarray(np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))[:, :, ::-1])


def _result(box: np.ndarray, score: float, kps: np.ndarray | None, crop: np.ndarray, vector: np.ndarray,
            size: tuple[int, int]) -> FaceResult:
    """FaceResult in image pixels (boxes clipped to the frame); quality also weighs the detector's score."""
    width, height = size
    x1, y1, x2, y2 = (float(v) for v in box)
    left, top = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    right, bottom = min(max(x2, left), width), min(max(y2, top), height)
    landmarks = [(float(x), float(y)) for x, y in np.asarray(kps).reshape(-1, 2)] if kps is not None else []
    geometric = face_quality(min(x2 - x1, y2 - y1), crop[:, :, ::-1])
    return FaceResult(box=(left, top, right - left, bottom - top), score=round(float(score), 4),
                      landmarks=landmarks, embedding=vector.astype(np.float32),
                      quality=round(math.sqrt(geometric * max(0.0, min(1.0, float(score)))), 4))


def load(spec: dict[str, Any] | None = None) -> InsightFaceModel:
    """The insightface analyzer for a folder of ONNX files (checked now, sessions built on first use)."""
    spec = dict(spec or {})
    return InsightFaceModel(model_folder(spec), spec)
