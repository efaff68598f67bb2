"""Catalog schema: versioned, migrated in place, and a changed model recomputes only its own stage."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from catalog.db import engine_for, schema_version
from catalog.models import SCHEMA_VERSION
from conftest import DATA, cli_json


def test_v1_catalog_is_migrated(tmp_path: Path) -> None:
    db_path = tmp_path / "catalog.db"
    with sqlite3.connect(db_path) as db:  # what v1 wrote: no task.model column
        db.execute("CREATE TABLE schemainfo (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
        db.execute("INSERT INTO schemainfo VALUES ('schema_version', '1')")
        db.execute("CREATE TABLE task (id INTEGER PRIMARY KEY, media_id INTEGER, stage VARCHAR, status VARCHAR,"
                   " attempts INTEGER, error VARCHAR, updated_at DATETIME)")
    url = f"sqlite:///{db_path}"
    engine_for(url)
    assert schema_version(url) == SCHEMA_VERSION
    with sqlite3.connect(db_path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(task)")}
    assert "model" in columns


def test_changing_one_model_recomputes_only_its_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("skimage_chelsea.png", "skimage_coffee.png"):
        shutil.copy(DATA / "photos" / name, src / name)
    monkeypatch.setenv("PHOTO_ENGINE_ANALYZERS", "embed,tags")
    first = cli_json("ingest", str(src), library=tmp_path / "lib")
    assert first["analyzers"]["tags"]["done"] == 2 and first["analyzers"]["embed"]["done"] == 2

    config = yaml.safe_load(Path("models.yaml").read_text())
    config["profiles"]["offline"]["tags"]["model_id"] = "mobilenet_v2-relabelled"
    custom = tmp_path / "models.yaml"
    custom.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("PHOTO_ENGINE_MODELS", str(custom))
    second = cli_json("ingest", library=tmp_path / "lib")
    assert second["analyzers"]["tags"]["done"] == 2
    assert second["analyzers"]["embed"]["done"] == 0
    with sqlite3.connect(tmp_path / "lib" / "catalog.db") as db:
        models = {row[0] for row in db.execute("SELECT DISTINCT model FROM tag")}
    assert models == {"mobilenet_v2-relabelled"}
