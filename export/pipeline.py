"""One task, end to end: data -> LoRA fine-tune -> merge -> ONNX export with proof -> evaluate -> card -> register."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from config import settings
from runtime import registry

log = logging.getLogger(__name__)


def _previous_metrics(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def times_test_scored(folder: Path, version: str) -> int:
    """How often this adapter version's test split was scored before (its metrics.json keeps count; 0 for a
    new version, or for a card written before the count existed)."""
    previous = _previous_metrics(folder)
    return int(previous.get("test_split_scored", 0)) if previous.get("model_version") == version else 0


# Sentences a version's card keeps from one evaluation to the next, each a look at its test split: a serving change
# that was then not released (what was changed, what it scored), and a released serving change of the same version
# (what changed, the figures it replaced). They count in test_split_scored and stay on every later card.
CARRIED_NOTES = ("test_looks_not_released", "serving_changes", "chosen_on_validation")


def carried_notes(folder: Path, version: str) -> dict[str, list[str]]:
    """This version's notes of CARRIED_NOTES from its previous metrics.json ({} for a new version)."""
    previous = _previous_metrics(folder)
    if previous.get("model_version") != version:
        return {}
    return {key: list(previous[key]) for key in CARRIED_NOTES if previous.get(key)}


def earlier_test_scores(folder: Path, version: str) -> dict[str, int]:
    """How often the task's test split was scored for each earlier adapter version (carried from card to card):
    a recipe changed after seeing an earlier version's test figure has looked at the test split too."""
    previous = _previous_metrics(folder)
    earlier = dict(previous.get("test_split_scored_earlier", {}))
    if previous.get("model_version") and previous["model_version"] != version:
        # a card from before the count existed still shows test figures: it was scored at least once
        earlier[previous["model_version"]] = int(previous.get("test_split_scored", 1 if previous.get("fine_tuned")
                                                               else 0))
    return earlier


def run_task(name: str, train: bool = True, scale: float = 1.0, steps: int | None = None,
             time_budget: float | None = None, extra: list[str] | None = None, eval_n: int | None = None,
             go_on: bool = False, eval_every: int | None = None, candidate: Path | None = None,
             lr: float | None = None) -> dict:
    """go_on: train the committed adapter further (on training rows it has not drawn) instead of a fresh one.

    candidate: train into that folder and stop there (nothing evaluated, registered or committed): whether it
    replaces the committed adapter is decided on validation (python -m bench.candidate), before a test look."""
    from export.base_model import prepare_base
    from export.card import write_card
    from export.evaluate import evaluate_task
    from export.finetuned import adapter_dir, build_tuned_version, write_adapter_meta
    from export.prepare import register_base_version, shared_graph, task_base
    from export.train import config_for, load_extra
    from export.train import train as train_adapter
    from tasks import REGISTRY, TaskKind, build_data
    from tasks.splits import leaks

    s = settings()
    task = REGISTRY[name]
    splits = build_data(name)
    leaked = leaks(splits)
    if leaked:
        raise RuntimeError(f"{len(leaked)} test texts also occur in training data, e.g. {leaked[0]!r}")
    source = task_base(s, name)
    base_dir = prepare_base(source, s.models_dir)
    folder = Path(candidate) if candidate else adapter_dir(name)
    facts_path = folder / "train_facts.json"
    if train:
        cfg = config_for(task, scale, steps, time_budget, eval_every, lr)
        extra_rows = [r for p in (extra or []) for r in load_extra(Path(p), task)]
        train_adapter(task, splits, base_dir, folder, cfg, extra_rows, start_from=adapter_dir(name) if go_on else None)
        write_adapter_meta(folder, base_dir)  # the base hash it was trained on: no other base will serve it
    if candidate:
        if task.kind == TaskKind.CLASSIFY:  # a classifier's run scores validation as it trains
            sel = json.loads(facts_path.read_text()).get("val_selection") or {}
            print(f"{name}: candidate adapter in {folder}; validation {sel.get('metric')} {sel.get('selected_value')} "
                  f"(step {sel.get('selected_step')}; curve {sel.get('curve')})")
        else:
            print(f"{name}: candidate adapter in {folder}; compare it on validation: "
                  f"python -m bench.candidate --task {name} --candidate {folder}")
        return {}
    facts = json.loads(facts_path.read_text())
    same_base = [t for t in REGISTRY if task_base(s, t) == source]
    base_mv = register_base_version(s, same_base, source)  # the zero-shot comparison (and fallback) version
    # registered once, with metrics
    tuned_mv = build_tuned_version(task, base_dir, s.models_dir, register=False, shared=s.adapters == "shared",
                                   graph=shared_graph(s))
    metrics = evaluate_task(task, splits, s.models_dir, tuned_mv, base_mv, s, n=eval_n)
    metrics["test_split_scored"] = times_test_scored(folder, tuned_mv.version) + 1
    metrics["test_split_scored_earlier"] = earlier_test_scores(folder, tuned_mv.version)
    metrics.update(carried_notes(folder, tuned_mv.version))
    card = write_card(folder, task, splits.card(), facts, metrics, source)
    tuned_mv.metrics = metrics
    registry.register(s.models_dir, name, tuned_mv)  # now with its metrics; the app picks it up live
    log.info("%s: %s; card at %s", name, metrics["target"], card)
    print(f"{name}: {metrics['target']}")
    return metrics


def compare_bases(name: str, bases: list[str], steps: int | None = None, n: int | None = None,
                  time_budget: float | None = None) -> dict:
    """The evidence for a task's base: each candidate base's score on the validation split.

    Classifiers: the task's recipe trained on each base (their training scores the validation split as it goes);
    the committed adapter's own run counts for its base when its recipe is the one asked for, other bases are
    trained into models/candidates/<task>-<base> (git-ignored). Generation tasks: each untuned base, zero-shot,
    through the serving path on `n` validation rows (a fine-tune per base would cost an hour each on 2 cores).
    Written to adapters/<task>/base_comparison.json; the card shows it.
    """
    from dataclasses import asdict, replace

    from export.base_model import prepare_base
    from export.evaluate import eval_rows, open_version, score
    from export.finetuned import adapter_dir
    from export.prepare import base_version
    from export.train import config_for
    from export.train import train as train_adapter
    from tasks import REGISTRY, TaskKind, build_data
    from tasks.plans import TrainConfig

    s = settings()
    task = REGISTRY[name]
    cfg = config_for(task, steps=steps, time_budget=time_budget)
    classify = task.kind == TaskKind.CLASSIFY
    if classify and not cfg.eval_every:
        raise ValueError(f"{name} does not score its validation split while training (eval_every=0)")
    folder = adapter_dir(name)
    own = json.loads((folder / "train_facts.json").read_text()) if (folder / "train_facts.json").exists() else {}
    # the time budget is not part of the recipe when the committed run finished every planned step
    ignored = {"base"} | ({"time_budget_s"} if own and own.get("steps") == own.get("max_steps") else set())
    # a field added to TrainConfig after the committed run was trained had its default value then
    own_cfg = {**asdict(TrainConfig()), **own.get("config", {})}
    same_recipe = {k: v for k, v in own_cfg.items() if k not in ignored} == \
        {k: v for k, v in asdict(cfg).items() if k not in ignored}
    splits = None
    runs = {}
    for base in bases:
        if classify and base == task.train.base and same_recipe and own.get("val_selection"):
            facts, source = own, "the committed adapter's run"
        elif classify:
            splits = splits or build_data(name)
            # kept (git-ignored): a base that wins can be released from here without an hour of training again
            keep = s.models_dir / "candidates" / f"{name}-{base}"
            facts = train_adapter(task, splits, prepare_base(base, s.models_dir), keep, replace(cfg, base=base))
            source = f"trained for this comparison, adapter kept in models/candidates/{keep.name}"
        else:
            splits = splits or build_data(name)
            rows = eval_rows(task, replace(splits, test=splits.val), n)
            m = score(task, open_version(s.models_dir, base_version(s, base)), s, rows)
            m.pop("examples", None)
            # perplexity per token depends on the tokenizer: bases are compared per character
            metric = "char_perplexity" if task.evaluation.scoring == "perplexity" else task.evaluation.metric
            runs[base] = {"metric": metric, "best": m[metric], "n": len(rows),
                          "run": "untuned, zero-shot", "scores": m}
            log.info("%s on %s: validation %s %.4f (zero-shot)", name, base, metric, m[metric])
            continue
        sel = facts["val_selection"]
        runs[base] = {"metric": sel["metric"], "best": sel["selected_value"], "n": sel["n"],
                      "run": f"best of {facts['steps']} steps, at step {sel['selected_step']}; {source}",
                      "seconds": facts["seconds"], **({"per_group": sel["per_group"]} if sel.get("per_group") else {})}
        log.info("%s on %s: validation %s %.4f (step %d)", name, base, sel["metric"], sel["selected_value"],
                 sel["selected_step"])
    result = {"task": name, "chosen": task.train.base, "recipe": {k: v for k, v in asdict(cfg).items() if k != "base"},
              "runs": runs}
    (folder / "base_comparison.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result
