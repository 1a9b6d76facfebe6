"""A task's committed adapter against candidate adapter folders, on the validation split, as served.

    python -m bench.candidate --task qa --candidate /tmp/qa-new [--candidate ...] [--n 400]
    python -m bench.candidate --task translate --candidate DIR --n 200 --guard 1.0 --keep "English → Chinese chrF"

Whether a newly trained generation adapter replaces the committed one is a choice, so it is made here, on
validation, before `python -m export evaluate` scores the test split once for the one released. Each adapter
runs at run time on the shared base graph (no merged decode graph, so both are served the same way), with the
task's evaluation selection of the validation rows; the table shows the task metric and every other figure its
evaluation computes (for qa: hand-over rates, the right entry, numbers grounded). With --guard (and --keep), each
candidate also gets the verdict of a rule written down before the run: its metric above the committed adapter's,
no group's (direction's, language's) metric more than GUARD below, each --keep figure not below.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def flat_figures(scores: dict) -> dict[str, float]:
    """An evaluation's numbers in one level: top-level figures, then each group's ("English → Chinese chrF"), so a
    choice can see what a candidate does to one direction or language as well as to the whole."""
    out = {k: v for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
           and k != "seconds"}
    for group, figures in scores.items():
        if isinstance(figures, dict):
            out.update({f"{group} {k}": v for k, v in figures.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return out


def judge(committed: dict, candidate: dict, metric: str, guard: float, keep: tuple[str, ...] = ()) -> list[str]:
    """Why `candidate` does not replace `committed` under the rule (empty: it does): `metric` higher, each group's
    `metric` ("English → Chinese chrF") at most `guard` below, each figure named in `keep` not below."""
    why = []
    if not candidate[metric] > committed[metric]:
        why.append(f"{metric} {candidate[metric]:.2f} not above {committed[metric]:.2f}")
    for key in sorted(k for k in committed if k.endswith(f" {metric}") and k != metric):
        if candidate[key] < committed[key] - guard:
            why.append(f"{key} {candidate[key]:.2f} more than {guard:g} below {committed[key]:.2f}")
    for key in keep:
        if candidate[key] < committed[key]:
            why.append(f"{key} {candidate[key]:.2f} below {committed[key]:.2f}")
    return why


def main(argv=None) -> int:
    from config import settings
    from export.base_model import prepare_base
    from export.evaluate import eval_rows, open_version, score
    from export.finetuned import adapter_dir, build_tuned_version
    from export.prepare import shared_graph, task_base
    from tasks import REGISTRY, TaskKind, build_data

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--candidate", action="append", required=True, help="an adapter folder (train writes one)")
    p.add_argument("--n", type=int, help="validation rows, as the task's evaluation selects them (default: its size)")
    p.add_argument("--guard", type=float, help="judge each candidate: metric above the committed adapter's, no group's "
                                               "metric more than GUARD below")
    p.add_argument("--keep", action="append", default=[], help="with --guard: a figure that must not fall "
                                                               "(a column of the table); repeatable")
    a = p.parse_args(argv)
    s = settings()
    task = REGISTRY[a.task]
    if task.kind == TaskKind.CLASSIFY:
        p.error("classifiers choose on validation while training (eval_every); this is for generation tasks")
    base_dir = prepare_base(task_base(s, a.task), s.models_dir)
    rows = eval_rows(task, build_data(a.task), a.n, split="val")
    print(f"{a.task}: validation split, {len(rows)} rows; run-time adapter on the shared base graph, int8")
    results = []
    for folder in [adapter_dir(a.task), *map(Path, a.candidate)]:
        mv = build_tuned_version(task, base_dir, s.models_dir, folder=folder, register=False,
                                 shared=s.adapters == "shared", graph=shared_graph(s))
        t0 = time.perf_counter()
        m = score(task, open_version(s.models_dir, mv), s, rows)
        figures = flat_figures(m)
        results.append((f"{mv.version} ({folder})", figures, time.perf_counter() - t0))
        print(f"  {results[-1][0]}: {figures}", flush=True)
    keys = list(results[0][1])
    print("| adapter | " + " | ".join(keys) + " | seconds |")
    print("|---" * (len(keys) + 2) + "|")
    for name, figures, seconds in results:
        print(f"| {name} | " + " | ".join(f"{figures.get(k, float('nan')):.4f}" for k in keys) + f" | {seconds:.0f} |")
    if a.guard is not None:
        for name, figures, _ in results[1:]:
            why = judge(results[0][1], figures, task.evaluation.metric, a.guard, tuple(a.keep))
            print(f"{name}: " + ("replaces the committed adapter by the rule" if not why else
                                 "does not replace it: " + "; ".join(why)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
