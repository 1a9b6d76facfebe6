"""Make every task servable (`python -m export prepare`): base checkpoint, ONNX export with proof, a registered
version per task (its committed adapter merged in, or the un-tuned base as fallback)."""
from __future__ import annotations

import logging
import time
from dataclasses import replace

from config import Settings
from runtime import registry

log = logging.getLogger(__name__)


def task_base(s: Settings, task: str) -> str:
    """The base a task is built on: NLPAPP_BASE_MODEL when set (then every task uses it), else the task's own
    choice (`TrainConfig.base`, the base that won on its validation split)."""
    from tasks import REGISTRY

    return s.base_model or REGISTRY[task].train.base


def shared_graph(s: Settings) -> str:
    """The shared base graph to build and serve: NLPAPP_GRAPH, with auto resolved for this host (fused on CPU;
    with CUDA the optimum export, whose fp16 cache stays on the device)."""
    if s.graph != "auto":
        return s.graph
    from runtime.providers import cuda_usable

    return "optimum" if s.provider != "cpu" and cuda_usable() else "fused"


def base_version(s: Settings, source: str, precisions: list[str] | None = None,
                 force: bool = False) -> registry.ModelVersion:
    """The un-tuned base model `source` (zero-shot prompts), exported (cached by export key), not registered."""
    from export.base_model import base_sha256, prepare_base
    from export.lora_graph import export_shared_base
    from export.onnx_export import export_model

    ckpt = prepare_base(source, s.models_dir, force=force)
    if s.adapters == "shared":  # the LoRA-ready graph with rank-0 factors: the same session the adapters use
        result = export_shared_base(ckpt, s.models_dir / "onnx", shared_graph(s), precisions, force=force)
    else:
        result = export_model(ckpt, s.models_dir / "onnx", "lm", precisions, force=force)
    return registry.ModelVersion(version=f"base-{result.key[:8]}", kind="lm", path=str(result.path),
                                 tuned=False, base_model=source, base_sha256=base_sha256(ckpt))


def register_base_version(s: Settings, tasks: list[str], source: str, precisions: list[str] | None = None,
                          force: bool = False) -> registry.ModelVersion:
    """Register the un-tuned base `source` for `tasks`; a fine-tuned current version on this same base stays
    current (the base version is then only a fallback)."""
    mv = base_version(s, source, precisions, force)
    for task in tasks:
        cur = registry.current(s.models_dir, task)
        keep = cur is not None and cur.tuned and cur.base_sha256 == mv.base_sha256
        registry.register(s.models_dir, task, mv, make_current=not keep)
    return mv


def _wanted(task: str, base_sha: str) -> str | None:
    """The version a task should serve: its committed adapter's, if there is one trained on this base."""
    from export.finetuned import adapter_dir, adapter_version, base_refusal, has_adapter

    if not has_adapter(task) or base_refusal(adapter_dir(task), base_sha):
        return None
    return adapter_version(task)


def _stale(cur: registry.ModelVersion) -> bool:
    """A LoRA-ready export of an older patch format (its inputs no longer match the runtime's), a classifier export
    of an older recipe (CLASSIFIER_FORMAT), or an adapter version not checked on the graph it is registered with."""
    import json
    from pathlib import Path

    from export.gqa_graph import GQA_FORMAT
    from export.lora_graph import LORA_FORMAT
    from export.onnx_export import CLASSIFIER_FORMAT

    try:
        manifest = json.loads((Path(cur.path) / "manifest.json").read_text())
    except (OSError, ValueError):
        return True
    if cur.adapter and not (Path(cur.adapter) / f"checks-{Path(cur.path).name}.json").exists():
        return True  # never checked against PyTorch on this graph
    if manifest.get("graph") == "gqa":
        return manifest.get("gqa_format") != GQA_FORMAT
    if manifest.get("kind") == "classifier":  # its recipe, e.g. which weights are int8
        return manifest.get("classifier_format", 1) != CLASSIFIER_FORMAT
    return manifest.get("lora_format", LORA_FORMAT) != LORA_FORMAT


def _served_as_configured(s: Settings, task: str, cur: registry.ModelVersion) -> bool:
    """A generation task's adapter is served the way NLPAPP_ADAPTERS says (shared base graph, or merged), on the
    shared graph NLPAPP_GRAPH says (fused or optimum)."""
    from tasks import REGISTRY, TaskKind

    if REGISTRY[task].kind == TaskKind.CLASSIFY:
        return True
    if bool(cur.adapter) != (s.adapters == "shared"):
        return False
    return not cur.adapter or graph_of(cur) == shared_graph(s)


def graph_of(cur: registry.ModelVersion) -> str:
    """"fused" or "optimum": the kind of graph a version is registered on (its export's manifest)."""
    import json
    from pathlib import Path

    try:
        manifest = json.loads((Path(cur.path) / "manifest.json").read_text())
    except (OSError, ValueError):
        return "optimum"
    return "fused" if manifest.get("graph") == "gqa" else "optimum"


def embedder_ready(s: Settings) -> bool:
    from runtime.embedder import EXPORT_FOLDER, default_model_dir, onnx_export_of

    return onnx_export_of(default_model_dir(), s.models_dir / EXPORT_FOLDER) is not None


def ready(s: Settings, tasks: list[str]) -> bool:
    """Every task's model, the merged decode graphs asked for and the retrieval embedder are built and current:
    serving can start as is."""
    return embedder_ready(s) and tasks_ready(s, tasks) and all(merged_ready(s, t) for t in s.merged_decode)


def _generates(task: str) -> bool:
    from tasks import REGISTRY, TaskKind

    return task in REGISTRY and REGISTRY[task].kind != TaskKind.CLASSIFY


def _mergeable(s: Settings, task: str) -> registry.ModelVersion | None:
    """The task's current version, if it is an adapter on the fused graph (what a merged decode graph needs)."""
    if not _generates(task):
        return None
    cur = registry.current(s.models_dir, task)
    if cur is None or not cur.adapter or graph_of(cur) != "fused":
        return None
    return cur


def merged_ready(s: Settings, task: str) -> bool:
    """The task's merged decode graph is built for its current version, or was tried and refused by its check."""
    from pathlib import Path

    from runtime.gqa import merged_manifest

    cur = _mergeable(s, task)
    return cur is None or merged_manifest(s.models_dir, cur.version, Path(cur.path)) is not None


def build_merged(s: Settings, task: str, force: bool = False) -> None:
    """The merged decode graph of `task`'s served adapter (export/merged_decode.py), if it serves one on the fused
    graph; a merge that fails its check is logged and the task decodes on the shared graph."""
    from pathlib import Path

    from export.merged_decode import build_merged_decode

    if not _generates(task):
        log.warning("NLPAPP_MERGED_DECODE names %r, which is not a generation task: ignored", task)
        return
    cur = _mergeable(s, task)
    if cur is None:  # e.g. on another base, where the task serves the un-tuned base: nothing to merge
        log.info("task %s serves no adapter on the fused graph: no merged decode graph", task)
        return
    try:
        build_merged_decode(Path(cur.path), Path(cur.adapter), cur.version, s.models_dir, force=force)
    except ValueError as refused:
        log.warning("task %s decodes on the shared graph: %s", task, refused)


def tasks_ready(s: Settings, tasks: list[str]) -> bool:
    from export.base_model import expected_base_sha256
    from export.finetuned import has_adapter

    for t in tasks:
        base_sha = expected_base_sha256(task_base(s, t))
        cur = registry.current(s.models_dir, t)
        want = _wanted(t, base_sha)
        if cur is None or cur.base_sha256 != base_sha or (want is not None and cur.version != want):
            return False
        if want is not None and not _served_as_configured(s, t, cur):
            return False
        if want is None and has_adapter(t) and cur.tuned:  # its adapter is refused on this base
            return False
        if _stale(cur):
            return False
    return True


def prepare_models(s: Settings, tasks: list[str], force: bool = False) -> None:
    """Every task on its base (task_base): its committed adapter merged, exported and registered; a task with no
    adapter for that base (none, or one trained on another base) serves the un-tuned base, and says why.
    A base is exported un-tuned only when some task needs that fallback."""
    t_all = time.perf_counter()
    if force or not tasks_ready(s, tasks):
        by_base: dict[str, list[str]] = {}
        for t in tasks:
            by_base.setdefault(task_base(s, t), []).append(t)
        for source, group in by_base.items():
            _prepare_on_base(s, source, group, force)
    for t in s.merged_decode:
        build_merged(s, t, force)
    from export.embedder import build_embedder

    build_embedder(s.models_dir, force=force)  # retrieval's model, so that serving never needs torch
    for t in tasks:
        log.info("task %s -> %s", t, registry.current(s.models_dir, t).version)
    log.info("all %d tasks ready in %.1f s", len(tasks), time.perf_counter() - t_all)


def _prepare_on_base(s: Settings, source: str, tasks: list[str], force: bool) -> None:
    from export.base_model import base_sha256, prepare_base
    from export.finetuned import adapter_dir, adapter_version, base_refusal, build_tuned_version, has_adapter
    from tasks import REGISTRY

    base_dir = prepare_base(source, s.models_dir, force=force)
    base_sha = base_sha256(base_dir)
    fallback = None  # the un-tuned base version, exported only if some task needs it
    for t in tasks:
        t0 = time.perf_counter()
        want = _wanted(t, base_sha)
        cur = registry.current(s.models_dir, t)
        if want is None:
            refusal = base_refusal(adapter_dir(t), base_sha, adapter_version(t)) if has_adapter(t) else ""
            if refusal:
                log.warning("task %s: %s; it serves the un-tuned base", t, refusal)
            if (force or cur is None or cur.base_sha256 != base_sha or cur.tuned or cur.note != refusal
                    or _stale(cur)):
                fallback = fallback or base_version(s, source, force=force)
                registry.register(s.models_dir, t, replace(fallback, note=refusal))
        elif (force or cur is None or cur.version != want or not _served_as_configured(s, t, cur)
              or _stale(cur)):
            build_tuned_version(REGISTRY[t], base_dir, s.models_dir, shared=s.adapters == "shared",
                                graph=shared_graph(s))
        cur = registry.current(s.models_dir, t)
        log.info("step task %s registered on %s: %s (%s) done in %.1f s", t, source, cur.version,
                 "fine-tuned" if cur.tuned else "un-tuned base" + (", adapter refused" if cur.note else ""),
                 time.perf_counter() - t0)
