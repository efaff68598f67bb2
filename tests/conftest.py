"""Shared fixtures: real sample files copied into a temporary source folder, and a fresh library."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


@pytest.fixture(autouse=True)
def _no_network_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach a model hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("PHOTO_ENGINE_ANALYZERS", "none")  # foundation tests; analyzer tests opt in


@pytest.fixture
def library_dir(tmp_path: Path) -> Path:
    return tmp_path / "library"


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    """A source folder with real photos (incl. HEIC, EXIF/GPS), videos and the truncated HEIC."""
    src = tmp_path / "source"
    for sub in ("photos", "exif", "heic", "videos"):
        shutil.copytree(DATA / sub, src / sub)
    for path in src.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    return src


def run_cli(*args: str, library: Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `photo-engine` as a user would, in a separate process."""
    env = dict(os.environ, PHOTO_ENGINE_LIBRARY=str(library))
    proc = subprocess.run([sys.executable, "-m", "assistant.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"photo-engine {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def cli_json(*args: str, library: Path) -> dict:
    return json.loads(run_cli(*args, "--json", library=library).stdout)
