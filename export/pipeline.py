"""One task, end to end: data -> LoRA fine-tune -> merge -> ONNX export with proof -> evaluate -> card -> register."""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from config import settings
from runtime import registry

log = logging.getLogger(__name__)


def run_task(name: str, train: bool = True, scale: float = 1.0, steps: int | None = None,
             time_budget: float | None = None, extra: list[str] | None = None, eval_n: int | None = None) -> dict:
    from export.base_model import prepare_base
    from export.card import write_card
    from export.evaluate import evaluate_task
    from export.finetuned import adapter_dir, prepare_tuned, write_adapter_meta
    from export.prepare import prepare_base_versions
    from export.train import TRAIN_CONFIGS, load_extra
    from export.train import train as train_adapter
    from tasks import REGISTRY, build_data
    from tasks.splits import leaks

    s = settings()
    task = REGISTRY[name]
    splits = build_data(name)
    leaked = leaks(splits)
    if leaked:
        raise RuntimeError(f"{len(leaked)} test texts also occur in training data, e.g. {leaked[0]!r}")
    base_dir = prepare_base(s.base_model, s.models_dir)
    folder = adapter_dir(name)
    facts_path = folder / "train_facts.json"
    if train:
        cfg = TRAIN_CONFIGS[name].scaled(scale) if scale != 1.0 else TRAIN_CONFIGS[name]
        if steps:
            cfg = replace(cfg, max_steps=steps)
        if time_budget:
            cfg = replace(cfg, time_budget_s=time_budget)
        extra_rows = [r for p in (extra or []) for r in load_extra(Path(p), task)]
        train_adapter(task, splits, base_dir, folder, cfg, extra_rows)
        write_adapter_meta(folder, base_dir)  # the base hash it was trained on: no other base will serve it
    facts = json.loads(facts_path.read_text())
    base_mv = prepare_base_versions(s, list(REGISTRY))  # the zero-shot comparison (and fallback) version
    tuned_mv = prepare_tuned(task, base_dir, s.models_dir)
    metrics = evaluate_task(task, splits, s.models_dir, tuned_mv, base_mv, s, n=eval_n)
    card = write_card(folder, task, splits.card(), facts, metrics, s.base_model)
    tuned_mv.metrics = metrics
    registry.register(s.models_dir, name, tuned_mv)  # now with its metrics; the app picks it up live
    log.info("%s: %s; card at %s", name, metrics["target"], card)
    print(f"{name}: {metrics['target']}")
    return metrics
