"""What each analyzer of a profile uses, where it comes from, and whether it is on this machine."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import platformdirs

from catalog.model_config import active_profile_name, load_models_file


def models_dir() -> Path:
    """Where `models fetch` keeps hub downloads (a user can also point any entry at a local `path`)."""
    return Path(platformdirs.user_data_dir("photo-engine")) / "models"


def _presence(spec: dict[str, Any]) -> tuple[str, bool, str]:
    """(source, present, detail) for one model entry."""
    if spec.get("path"):
        path = Path(spec["path"]).expanduser()
        return f"path:{path}", path.exists(), "" if path.exists() else f"{path} does not exist"
    if spec.get("package"):
        package = spec["package"]
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return f"package:{package}", False, f"pip install {package}"
        return f"package:{package}=={version}", True, ""
    local = models_dir() / str(spec.get("model", "")).replace("/", "--")
    return f"hub:{spec.get('model')}", local.exists(), "" if local.exists() else "not fetched (photo-engine models fetch)"


def models_report(profile: str | None = None) -> dict[str, Any]:
    name = profile or active_profile_name()
    profiles = load_models_file()["profiles"]
    if name not in profiles:
        raise ValueError(f"unknown profile {name!r}; models.yaml has {sorted(profiles)}")
    rows = []
    for family, spec in profiles[name].items():
        source, present, detail = _presence(spec)
        rows.append({"family": family, "model": spec.get("model"), "source": source, "present": present,
                     "detail": detail, "license": spec.get("license")})
    return {"profile": name, "models": rows}
