"""Make every task servable (`python -m export prepare`): base checkpoint, ONNX export with proof, a registered
version per task (its committed adapter merged in, or the un-tuned base as fallback)."""
from __future__ import annotations

import logging
from pathlib import Path

from config import Settings
from runtime import registry

log = logging.getLogger(__name__)


def register_base_version(s: Settings, tasks: list[str], precisions: list[str] | None = None,
                          force: bool = False) -> registry.ModelVersion:
    """Register the un-tuned base model (zero-shot prompts) for every task that has no version yet."""
    from export.base_model import prepare_base
    from export.onnx_export import export_model

    ckpt = prepare_base(s.base_model, s.models_dir, force=force)
    result = export_model(ckpt, s.models_dir / "onnx", "lm", precisions, force=force)
    mv = registry.ModelVersion(version=f"base-{result.key[:8]}", kind="lm", path=str(result.path),
                               tuned=False, base_model=s.base_model)
    for task in tasks:
        cur = registry.current(s.models_dir, task)
        # a fine-tuned current version stays current; the base version is only a fallback
        registry.register(s.models_dir, task, mv, make_current=cur is None or not cur.tuned)
    return mv


def _wanted(s: Settings, task: str) -> str | None:
    """The version a task should serve: its committed adapter's, if there is one."""
    from export.finetuned import adapter_version, has_adapter

    return adapter_version(task) if has_adapter(task) else None


def ready(s: Settings, tasks: list[str]) -> bool:
    for t in tasks:
        cur = registry.current(s.models_dir, t)
        want = _wanted(s, t)
        if cur is None or (want is not None and cur.version != want):
            return False
    return True


def prepare_models(s: Settings, tasks: list[str], force: bool = False) -> None:
    """Base version for every task (fallback), then each committed adapter merged, exported and registered."""
    from export.base_model import prepare_base
    from export.finetuned import build_tuned_version
    from tasks import REGISTRY

    if force or not ready(s, tasks):
        register_base_version(s, tasks, force=force)
        base_dir = prepare_base(s.base_model, s.models_dir)
        for t in tasks:
            want = _wanted(s, t)
            cur = registry.current(s.models_dir, t)
            if want is not None and (force or cur is None or cur.version != want):
                build_tuned_version(REGISTRY[t], base_dir, s.models_dir)
    for t in tasks:
        log.info("task %s -> %s", t, registry.current(s.models_dir, t).version)
