"""Would a per-class offset on a served classifier's scores help? A grid of offsets, scored on validation only.

    python -m bench.class_offsets --task finnews [--step 0.25 --span 1.0]

A trained classifier can lean to one class (financial news misses its neutral-recall target on the test split);
adding a constant to one class's log-probability moves that lean. Whether to move it is a choice, so it is made
on the validation split, through the served export, before anyone changes what is served: this prints the
task's metric and each class's recall (per language where the task scores languages apart) at offset 0 and at
the best offsets of the grid. The test split is never read.
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np


def best_offsets(logp: np.ndarray, labels: np.ndarray, score, grid: list[float], top: int = 5) -> list[tuple]:
    """(score, offsets) for every offset vector on `grid` (class 0 held at 0: only differences matter), best first;
    ties keep the smaller total shift first, so offset 0 wins a tie."""
    n_classes = logp.shape[1]
    out = []
    for rest in itertools.product(grid, repeat=n_classes - 1):
        offsets = np.array((0.0, *rest))
        out.append((score(labels, (logp + offsets).argmax(1)), offsets))
    out.sort(key=lambda t: (-t[0], float(np.abs(t[1]).sum())))
    return out[:top]


def main(argv=None) -> int:
    from bench import served_classifier
    from tasks import build_data
    from tasks.plans import group_value

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--step", type=float, default=0.25)
    p.add_argument("--span", type=float, default=1.0, help="offsets from -span to +span")
    a = p.parse_args(argv)
    task, mv, backend = served_classifier(p, a.task)
    rows = build_data(a.task).val
    metric = task.evaluation.metric
    grid = [round(x, 4) for x in np.arange(-a.span, a.span + a.step / 2, a.step)]
    logp = np.log(np.clip(backend.model.predict_proba([r["text"] for r in rows]), 1e-12, None))
    names = [backend.labels[i] for i in range(logp.shape[1])]
    y = np.array([names.index(r["label"]) for r in rows])

    def figures(labels, preds) -> dict:  # the task's own metric, as its card scores it (recall of each class too)
        return task.metric([names[i] for i in preds], [names[i] for i in labels])

    group_by = task.evaluation.group_by
    groups = sorted({group_value(r, group_by) for r in rows}) if group_by else [None]
    print(f"{a.task} {mv.version}: validation split, {len(rows)} rows, {metric} on the served export; "
          f"offsets added to the log-probabilities of {', '.join(names[1:])} ({names[0]} held at 0)")
    print("| rows | offsets | " + metric + " | " + " | ".join(f"recall {n}" for n in names) + " |")
    print("|---" * (3 + len(names)) + "|")
    for g in groups:
        idx = np.array([i for i, r in enumerate(rows) if g is None or group_value(r, group_by) == g])
        found = best_offsets(logp[idx], y[idx], lambda yy, pr: figures(yy, pr)[metric], grid)
        for _, offsets in [(None, np.zeros(len(names)))] + [f for f in found if np.any(f[1])][:3]:
            m = figures(y[idx], (logp[idx] + offsets).argmax(1))
            print(f"| {g or 'all'} ({len(idx)}) | {', '.join(f'{o:+.2f}' for o in offsets[1:])} | {m[metric]:.4f} | "
                  + " | ".join(f"{m.get(f'recall {n}', float('nan')):.3f}" for n in names) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
