"""`photo-engine models fetch`: download a profile's hub models once, verify them, then everything runs offline.

Each model lands in `models_dir()/<model id, '/' -> '--'>` (where the analyzers and `models_report` look),
first into a `.partial` folder that is renamed only after verification, so a half download is never taken for
a model. Files listed by the hub are checked against its sha256 (LFS) or git blob id; files with no published
checksum (the insightface zip) are checked to be non-empty and loadable. A `manifest.json` per model records
source, revision and each file's size and sha256; a model whose manifest matches is not fetched again.
Offline (`HF_HUB_OFFLINE=1`, or the hub not answering within a few seconds) it fails at once with one message
naming what could not be fetched: the engine keeps running on the `offline` profile.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from catalog.model_config import load_models_file
from tools.models import models_dir

MANIFEST = "manifest.json"  # insightface also reads a manifest.json: ours never carries its "manifest_version"
MANIFEST_KEY = "photo_engine_manifest"
DEFAULT_TIMEOUT = 5.0  # seconds to wait for the hub before calling this machine offline
INSIGHTFACE_ZOO = "https://github.com/deepinsight/insightface/releases/download/model-zoo/"
# Files a transformers model needs; weights only as safetensors when the repo has them (no duplicate .bin).
TRANSFORMERS_FILES = ["*.json", "*.txt", "*.model", "*.jinja", "*.safetensors"]
OPENCLIP_FILES = ["open_clip_model.safetensors", "open_clip_config.json"]
# GGUF entries in models.yaml name a file; where it lives on the hub unless the entry says (repo:, file:).
KNOWN_GGUF = {
    "Qwen2.5-3B-Instruct-Q4_K_M.gguf": ("Qwen/Qwen2.5-3B-Instruct-GGUF", "qwen2.5-3b-instruct-q4_k_m.gguf"),
}


class FetchError(RuntimeError):
    """Some models could not be fetched; `failed` names them, the message says what to do."""

    def __init__(self, message: str, failed: list[str], results: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.failed = failed
        self.results = results or []


@dataclass
class Plan:
    """What to download for one models.yaml entry and where it goes."""

    family: str
    model: str
    kind: str  # "hf" (files of a hub repo) | "zip" (an archive URL, insightface's model zoo)
    source: str  # stable identity stored in the manifest: a changed source means fetch again
    repo: str = ""
    patterns: list[str] = field(default_factory=list)
    url: str = ""
    license: str | None = None

    @property
    def label(self) -> str:
        return f"{self.family} {self.model}"

    def target(self, root: Path) -> Path:
        return root / self.model.replace("/", "--")


def plan_for(family: str, spec: dict[str, Any]) -> Plan | None:
    """The download plan of one entry; None for entries served by a package or a local path."""
    if spec.get("package") or spec.get("path"):
        return None
    model = str(spec.get("model") or "")
    common = {"family": family, "model": model, "license": spec.get("license")}
    if spec.get("url"):
        return Plan(kind="zip", source=f"url:{spec['url']}", url=str(spec["url"]), **common)
    if family == "faces" and "/" not in model:  # an insightface model pack name (buffalo_l, antelopev2)
        url = f"{INSIGHTFACE_ZOO}{model}.zip"
        return Plan(kind="zip", source=f"insightface:{model}", url=url, **common)
    if spec.get("pretrained"):  # OpenCLIP: architecture + pretrained tag -> its hub repo
        repo = str(spec.get("repo") or _openclip_repo(model, str(spec["pretrained"])))
        return Plan(kind="hf", source=f"hf:{repo}", repo=repo, patterns=list(spec.get("files") or OPENCLIP_FILES),
                    **common)
    if model.endswith(".gguf") or spec.get("file"):
        repo, filename = (spec.get("repo"), spec.get("file")) if spec.get("repo") else KNOWN_GGUF.get(model, ("", ""))
        if not repo:
            raise ValueError(f"{family}: no hub repo known for {model!r}; add 'repo:' and 'file:' to models.yaml")
        return Plan(kind="hf", source=f"hf:{repo}/{filename}", repo=str(repo), patterns=[str(filename)], **common)
    repo = str(spec.get("repo") or model)
    return Plan(kind="hf", source=f"hf:{repo}", repo=repo, patterns=list(spec.get("files") or TRANSFORMERS_FILES),
                **common)


def _openclip_repo(model: str, pretrained: str) -> str:
    import open_clip

    hub = (open_clip.get_pretrained_cfg(model, pretrained) or {}).get("hf_hub")
    if not hub:
        raise ValueError(f"open_clip has no hub repo for {model} / {pretrained}; add 'repo:' to models.yaml")
    return str(hub).strip("/")


def is_present(plan: Plan, root: Path) -> bool:
    """The model's folder has our manifest for the same source and every file it lists, at its size."""
    manifest = read_manifest(plan.target(root))
    if not manifest or manifest.get("source") != plan.source:
        return False
    files = manifest.get("files") or {}
    return bool(files) and all((plan.target(root) / name).is_file() and
                               (plan.target(root) / name).stat().st_size == meta.get("size")
                               for name, meta in files.items())


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get(MANIFEST_KEY) else None


def hub_offline() -> bool:
    """`HF_HUB_OFFLINE` as huggingface_hub reads it (set now or when it was imported)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    with contextlib.suppress(ImportError):
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    return False


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"


def probe(url: str, timeout: float) -> str | None:
    """None when `url` answers at all within `timeout` (any HTTP status), else why not."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return f"{url} unreachable ({reason})"


def fetch_models(profile: str = "full", progress: bool = True, root: Path | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
    """Download every hub model of `profile` that is not already here; one row per entry.

    Rows: {family, model, status: present | fetched | package | path, path}. Raises FetchError naming every
    model that could not be fetched (after trying all of them); offline it raises before downloading anything.
    """
    profiles = load_models_file()["profiles"]
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; models.yaml has {sorted(profiles)}")
    root = Path(root) if root is not None else models_dir()
    results: list[dict[str, Any]] = []
    todo: list[Plan] = []
    for family, spec in profiles[profile].items():
        plan = plan_for(family, spec)
        if plan is None:
            kind = "package" if spec.get("package") else "path"
            results.append({"family": family, "model": spec.get("model"), "status": kind,
                            "path": spec.get("path") or spec.get("package")})
        elif is_present(plan, root):
            results.append({"family": family, "model": plan.model, "status": "present",
                            "path": str(plan.target(root))})
        else:
            todo.append(plan)
    if not todo:
        return results
    offline_reason = "HF_HUB_OFFLINE is set" if hub_offline() else probe(hub_endpoint(), timeout)
    if offline_reason:
        raise FetchError(_message(profile, [(p.label, offline_reason) for p in todo]), [p.label for p in todo],
                         results)
    failures: list[tuple[str, str]] = []
    for plan in todo:
        try:
            folder = _fetch_one(plan, root, progress, timeout)
        except Exception as error:  # one failure must not hide the others: report them all at the end
            failures.append((plan.label, f"{type(error).__name__}: {error}"))
            continue
        results.append({"family": plan.family, "model": plan.model, "status": "fetched", "path": str(folder)})
    if failures:
        raise FetchError(_message(profile, failures), [label for label, _ in failures], results)
    return results


def _message(profile: str, failures: list[tuple[str, str]]) -> str:
    reasons = sorted({reason for _, reason in failures})
    names = ", ".join(label for label, _ in failures)
    why = reasons[0] if len(reasons) == 1 else "; ".join(f"{label}: {reason}" for label, reason in failures)
    return (f"could not fetch the {profile!r} models {names} ({why}). The engine keeps running on the "
            "'offline' profile; run `photo-engine models fetch` again with internet to upgrade.")


def _fetch_one(plan: Plan, root: Path, progress: bool, timeout: float) -> Path:
    target = plan.target(root)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if plan.kind == "zip":
            revision, verified = None, "loadable"
            _download_zip(plan.url, staging, progress, timeout)
            expected: dict[str, tuple[str, str]] = {}
        else:
            revision, expected = _download_hf(plan, staging, progress, timeout)
            verified = "sha256"
        files = _verify(staging, expected)
        manifest = {MANIFEST_KEY: 1, "family": plan.family, "model": plan.model, "source": plan.source,
                    "revision": revision, "license": plan.license, "verified": verified,
                    "fetched_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "files": files}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _download_hf(plan: Plan, staging: Path, progress: bool,
                 timeout: float) -> tuple[str | None, dict[str, tuple[str, str]]]:
    """Files of a hub repo matching the plan; returns (revision, {file: (algorithm, digest)})."""
    from huggingface_hub import HfApi, snapshot_download

    info = HfApi(endpoint=hub_endpoint()).model_info(plan.repo, files_metadata=True, timeout=timeout)
    names = [s.rfilename for s in info.siblings or []]
    chosen = [n for n in names if any(fnmatch.fnmatch(n, p) for p in plan.patterns)]
    if plan.patterns == TRANSFORMERS_FILES and not any(n.endswith(".safetensors") for n in chosen):
        chosen += [n for n in names if fnmatch.fnmatch(n, "*.bin")]  # an old repo with torch pickles only
    if not chosen:
        raise FileNotFoundError(f"{plan.repo} has no files matching {plan.patterns}")
    expected: dict[str, tuple[str, str]] = {}
    for sibling in info.siblings or []:
        if sibling.rfilename in chosen:
            if sibling.lfs is not None:
                expected[sibling.rfilename] = ("sha256", sibling.lfs.sha256)
            elif sibling.blob_id:
                expected[sibling.rfilename] = ("git-blob", sibling.blob_id)
    with _progress_bars(progress):
        snapshot_download(plan.repo, revision=info.sha, local_dir=staging, allow_patterns=chosen,
                          etag_timeout=timeout)
    shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping inside local_dir
    missing = [n for n in chosen if not (staging / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{plan.repo}: download incomplete, missing {missing}")
    return info.sha, expected


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if enabled:
        enable_progress_bars()
    else:
        disable_progress_bars()
    try:
        yield
    finally:
        (disable_progress_bars if was_disabled else enable_progress_bars)()


def _download_zip(url: str, staging: Path, progress: bool, timeout: float) -> None:
    """Stream an archive with a progress bar, unpack it, keep the model files at the folder's top."""
    from tqdm import tqdm

    archive = staging / "download.zip"
    with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], disable=not progress) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    with zipfile.ZipFile(archive) as zipped:
        bad = zipped.testzip()
        if bad:
            raise zipfile.BadZipFile(f"{url}: corrupt member {bad}")
        for member in zipped.namelist():  # no absolute paths or '..' escaping the folder
            if member.startswith("/") or ".." in Path(member).parts:
                raise zipfile.BadZipFile(f"{url}: unsafe member {member!r}")
        zipped.extractall(staging)
    archive.unlink()
    inner = [d for d in staging.iterdir() if d.is_dir()]
    if len(inner) == 1 and not any(p.is_file() for p in staging.iterdir()):
        for item in inner[0].iterdir():
            item.rename(staging / item.name)
        inner[0].rmdir()


def _verify(folder: Path, expected: dict[str, tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """{file: {size, sha256}} for every file; raises on a checksum mismatch, an empty or unloadable file."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        size = path.stat().st_size
        if size == 0:
            raise ValueError(f"{name} is empty")
        sha256 = _digest(path, "sha256")
        algorithm, want = expected.get(name, ("", ""))
        got = sha256 if algorithm == "sha256" else _git_blob_id(path) if algorithm == "git-blob" else want
        if got != want:
            raise ValueError(f"{name}: {algorithm} {got} does not match the hub's {want}")
        _check_loadable(path)
        files[name] = {"size": size, "sha256": sha256}
    if not files:
        raise ValueError(f"{folder.name}: nothing was downloaded")
    return files


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _git_blob_id(path: Path) -> str:
    """git's object id of a file (what the hub lists for small, non-LFS files)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_loadable(path: Path) -> None:
    """Cheap format checks: a truncated or HTML-error-page download fails here, not at first use."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        json.loads(path.read_text())
    elif suffix == ".safetensors":
        with open(path, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if not 0 < header_len < path.stat().st_size:
                raise ValueError(f"{path.name}: not a safetensors file")
            json.loads(handle.read(header_len))
    elif suffix == ".gguf":
        with open(path, "rb") as handle:
            if handle.read(4) != b"GGUF":
                raise ValueError(f"{path.name}: not a GGUF file")
    elif suffix == ".onnx":
        import onnx

        onnx.load(str(path), load_external_data=False)
