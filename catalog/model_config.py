"""`models.yaml`: named model profiles, read once; the active profile comes from the env or the file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

MODELS_FILE_ENV = "PHOTO_ENGINE_MODELS"
PROFILE_ENV = "PHOTO_ENGINE_PROFILE"
DEFAULT_FILE = Path(__file__).resolve().parent.parent / "models.yaml"


@lru_cache(maxsize=4)
def load_models_file(path: str | None = None) -> dict[str, Any]:
    file = Path(path or os.environ.get(MODELS_FILE_ENV) or DEFAULT_FILE)
    with open(file) as handle:
        data = yaml.safe_load(handle) or {}
    if "profiles" not in data:
        raise ValueError(f"{file}: no 'profiles' section")
    return data


def active_profile_name() -> str:
    return os.environ.get(PROFILE_ENV) or load_models_file().get("default_profile", "offline")


def model_spec(family: str, profile: str | None = None) -> dict[str, Any] | None:
    """The spec of one analyzer family in a profile, or None when the profile has no such model."""
    profiles = load_models_file()["profiles"]
    name = profile or active_profile_name()
    if name not in profiles:
        raise ValueError(f"unknown model profile {name!r}; models.yaml has {sorted(profiles)}")
    return profiles[name].get(family)
