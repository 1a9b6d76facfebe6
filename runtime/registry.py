"""Model registry: which exported model version serves each task (a small JSON file beside the models)."""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class ModelVersion:
    version: str  # e.g. "base-1a2b3c4d" or "sentiment-v3"
    kind: str  # "lm" (prompted, zero-shot classification by label words) or "classifier"
    path: str  # export folder holding <precision>/model.onnx, tokenizer and manifest.json
    tuned: bool = False
    base_model: str = ""
    metrics: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    base_sha256: str = ""  # sha256 of the base GGUF the served weights come from ("" if unverified)
    note: str = ""  # why this version serves (e.g. the task's adapter was refused: trained on another base)


def registry_path(models_dir: Path) -> Path:
    return Path(models_dir) / "registry.json"


def load(models_dir: Path) -> dict:
    try:
        return json.loads(registry_path(models_dir).read_text())
    except (OSError, ValueError):
        return {"tasks": {}}


def _save(models_dir: Path, data: dict) -> None:
    path = registry_path(models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".registry.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)  # readers never see a half-written file


def register(models_dir: Path, task: str, mv: ModelVersion, make_current: bool = True) -> None:
    data = load(models_dir)
    entry = data["tasks"].setdefault(task, {"current": None, "versions": {}})
    record = asdict(mv)
    try:  # relative inside the models folder, so the folder can move
        record["path"] = str(Path(mv.path).resolve().relative_to(Path(models_dir).resolve()))
    except ValueError:
        pass
    entry["versions"][mv.version] = record
    if make_current or entry["current"] is None:
        entry["current"] = mv.version
    _save(models_dir, data)


def current(models_dir: Path, task: str) -> ModelVersion | None:
    entry = load(models_dir)["tasks"].get(task)
    if not entry or not entry.get("current"):
        return None
    mv = ModelVersion(**entry["versions"][entry["current"]])
    mv.path = str(Path(models_dir) / mv.path)  # absolute paths stay absolute
    return mv if (Path(mv.path) / "manifest.json").exists() else None
