"""Make every task servable (`python -m export prepare`): base checkpoint, ONNX export with proof, a registered
version per task (its committed adapter merged in, or the un-tuned base as fallback)."""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from config import Settings
from runtime import registry

log = logging.getLogger(__name__)


def register_base_version(s: Settings, tasks: list[str], precisions: list[str] | None = None,
                          force: bool = False) -> registry.ModelVersion:
    """Register the un-tuned base model (zero-shot prompts) for every task that has no version yet."""
    from export.base_model import base_sha256, prepare_base
    from export.onnx_export import export_model

    ckpt = prepare_base(s.base_model, s.models_dir, force=force)
    result = export_model(ckpt, s.models_dir / "onnx", "lm", precisions, force=force)
    mv = registry.ModelVersion(version=f"base-{result.key[:8]}", kind="lm", path=str(result.path),
                               tuned=False, base_model=s.base_model, base_sha256=base_sha256(ckpt))
    for task in tasks:
        cur = registry.current(s.models_dir, task)
        # a fine-tuned current version on this same base stays current; the base version is only a fallback
        keep = cur is not None and cur.tuned and cur.base_sha256 == mv.base_sha256
        registry.register(s.models_dir, task, mv, make_current=not keep)
    return mv


def _wanted(s: Settings, task: str, base_sha: str) -> str | None:
    """The version a task should serve: its committed adapter's, if there is one trained on this base."""
    from export.finetuned import adapter_dir, adapter_version, base_refusal, has_adapter

    if not has_adapter(task) or base_refusal(adapter_dir(task), base_sha):
        return None
    return adapter_version(task)


def ready(s: Settings, tasks: list[str]) -> bool:
    from export.base_model import expected_base_sha256
    from export.finetuned import has_adapter

    base_sha = expected_base_sha256(s.base_model)
    for t in tasks:
        cur = registry.current(s.models_dir, t)
        want = _wanted(s, t, base_sha)
        if cur is None or cur.base_sha256 != base_sha or (want is not None and cur.version != want):
            return False
        if want is None and has_adapter(t) and cur.tuned:  # its adapter is refused on this base
            return False
    return True


def prepare_models(s: Settings, tasks: list[str], force: bool = False) -> None:
    """Base version for every task (fallback), then each committed adapter merged, exported and registered;
    an adapter trained on another base is not merged: its task serves the un-tuned base and says why."""
    from export.base_model import prepare_base
    from export.finetuned import adapter_dir, adapter_version, base_refusal, has_adapter, build_tuned_version
    from tasks import REGISTRY

    t_all = time.perf_counter()
    if force or not ready(s, tasks):
        base_mv = register_base_version(s, tasks, force=force)
        base_dir = prepare_base(s.base_model, s.models_dir)
        for t in tasks:
            t0 = time.perf_counter()
            refusal = base_refusal(adapter_dir(t), base_mv.base_sha256, adapter_version(t)) if has_adapter(t) else ""
            if refusal:
                log.warning("task %s: %s; it serves the un-tuned base", t, refusal)
                registry.register(s.models_dir, t, replace(base_mv, note=refusal))
            want = _wanted(s, t, base_mv.base_sha256)
            cur = registry.current(s.models_dir, t)
            if want is not None and (force or cur is None or cur.version != want):
                build_tuned_version(REGISTRY[t], base_dir, s.models_dir)
            cur = registry.current(s.models_dir, t)
            log.info("step task %s registered: %s (%s) done in %.1f s", t, cur.version,
                     "fine-tuned" if cur.tuned else "un-tuned base" + (", adapter refused" if cur.note else ""),
                     time.perf_counter() - t0)
    for t in tasks:
        log.info("task %s -> %s", t, registry.current(s.models_dir, t).version)
    log.info("all %d tasks ready in %.1f s", len(tasks), time.perf_counter() - t_all)
