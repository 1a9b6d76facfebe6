"""Model registry: a ledger of which exported model version serves each task, with the history of every change.

One JSON file beside the models (`registry.json`). Writes are serialised across processes by a file lock
(a training job and the server both register) and replace the file atomically; every registration appends a
history record (what, when, by whom, the previous current version), so any earlier version can be restored.
A file that cannot be read is an error, never an empty registry: the next write would lose every version.
"""
from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path


class ModelKind(StrEnum):
    """What an export is: a causal LM (generates; answers classify tasks zero-shot by label words) or a
    sequence classifier (a trained score head)."""

    LM = "lm"
    CLASSIFIER = "classifier"


class RegistryCorrupt(RuntimeError):
    """registry.json exists but cannot be read as a registry; nothing was written over it."""


@dataclass
class ModelVersion:
    version: str  # e.g. "base-1a2b3c4d" or "sentiment-3f2a9c1e"
    kind: ModelKind
    path: str  # export folder holding <precision>/model.onnx, tokenizer and manifest.json
    tuned: bool = False
    base_model: str = ""
    metrics: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    base_sha256: str = ""  # sha256 of the base GGUF the served weights come from ("" if unverified)
    note: str = ""  # why this version serves (e.g. the task's adapter was refused: trained on another base)
    # A LoRA adapter folder applied at run time to the shared base graph at `path` ("" = `path` is complete:
    # a merged export, or the base itself). Served from a copy under the models folder, so a version's
    # weights never change under its name.
    adapter: str = ""

    def __post_init__(self):
        self.kind = ModelKind(self.kind)


def registry_path(models_dir: Path) -> Path:
    return Path(models_dir) / "registry.json"


def load(models_dir: Path) -> dict:
    """The whole ledger; an empty one when there is no file yet. Raises RegistryCorrupt for a bad file."""
    path = registry_path(models_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"tasks": {}, "history": []}
    except OSError as e:
        raise RegistryCorrupt(f"the model registry {path} cannot be read ({e}); nothing was changed") from e
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
            raise ValueError("no 'tasks' table")
        for task, entry in data["tasks"].items():
            if not isinstance(entry.get("versions"), dict):
                raise ValueError(f"task {task!r} has no 'versions' table")
    except (ValueError, AttributeError) as e:
        raise RegistryCorrupt(
            f"the model registry {path} is damaged ({e}). It was left as it is: restore it from "
            f"{path.name}.bak beside it, or move it away to start an empty registry") from None
    data.setdefault("history", [])
    return data


@contextmanager
def _locked(models_dir: Path):
    """An exclusive lock across processes for one read-modify-write of the ledger."""
    lock = registry_path(models_dir).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _save(models_dir: Path, data: dict) -> None:
    """Atomic replace (readers never see a half-written file), and the same content as registry.json.bak:
    a copy to restore from if the ledger is damaged by anything but this code."""
    path = registry_path(models_dir)
    text = json.dumps(data, indent=1)
    for target in (path, path.with_name(path.name + ".bak")):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".registry.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()} ({Path(sys.argv[0]).name or 'python'})"


def _change(models_dir: Path, task: str, action: str, edit) -> None:
    """Under the lock: load, let `edit(entry)` change one task's entry (returning the new current version),
    append the history record, save."""
    with _locked(models_dir):
        data = load(models_dir)
        entry = data["tasks"].setdefault(task, {"current": None, "versions": {}})
        previous = entry["current"]
        version = edit(entry)
        data["history"].append({"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "task": task,
                                "action": action, "version": version, "current": entry["current"],
                                "previous": previous, "by": _who()})
        _save(models_dir, data)


def register(models_dir: Path, task: str, mv: ModelVersion, make_current: bool = True) -> None:
    record = asdict(mv)
    for key in ("path", "adapter"):
        if not record[key]:
            continue
        try:  # relative inside the models folder, so the folder can move
            record[key] = str(Path(record[key]).resolve().relative_to(Path(models_dir).resolve()))
        except ValueError:
            pass

    def edit(entry):
        entry["versions"][mv.version] = record
        if make_current or entry["current"] is None:
            entry["current"] = mv.version
        return mv.version

    _change(models_dir, task, "register", edit)


def rollback(models_dir: Path, task: str, version: str | None = None) -> str:
    """Make `version` (default: the version that was current before the present one) current again."""
    target: list[str] = []

    def edit(entry):
        nonlocal version
        if version is None:
            before = [h["previous"] for h in load(models_dir)["history"]
                      if h["task"] == task and h["current"] == entry["current"] and h["previous"]
                      and h["previous"] != entry["current"]]
            if not before:
                raise LookupError(f"no earlier version of {task!r} to roll back to")
            version = before[-1]
        if version not in entry["versions"]:
            raise LookupError(f"{task!r} has no version {version!r}")
        entry["current"] = version
        target.append(version)
        return version

    _change(models_dir, task, "rollback", edit)
    return target[0]


def history(models_dir: Path, task: str | None = None) -> list[dict]:
    return [h for h in load(models_dir)["history"] if task is None or h["task"] == task]


def current(models_dir: Path, task: str) -> ModelVersion | None:
    entry = load(models_dir)["tasks"].get(task)
    if not entry or not entry.get("current"):
        return None
    mv = ModelVersion(**entry["versions"][entry["current"]])
    mv.path = str(Path(models_dir) / mv.path)  # absolute paths stay absolute
    if mv.adapter:
        mv.adapter = str(Path(models_dir) / mv.adapter)
        if not (Path(mv.adapter) / "adapter_model.safetensors").exists():
            return None
    return mv if (Path(mv.path) / "manifest.json").exists() else None
