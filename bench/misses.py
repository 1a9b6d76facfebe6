"""A served classifier's misses on the validation split, most confident first, written out to be read.

    python -m bench.misses --task sentiment [--group Chinese] [--out /tmp/misses.jsonl]

A figure says how often a classifier is wrong, not why. Reading its misses does: a confident miss on a text that
plainly says the opposite of its label is a wrong label, a hesitant one on a mixed review is a hard case. This
lists every validation row the served export gets wrong (text, label, prediction, the probability it gave its
prediction), most confident first, per group where the task scores groups apart. The test split is never read.
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def misses(rows: list[dict], probs: np.ndarray, labels: list[str]) -> list[dict]:
    """The rows whose most probable class is not their label, each with its prediction and that class's
    probability, most confident first."""
    out = []
    for r, p in zip(rows, probs):
        k = int(np.argmax(p))
        if labels[k] != r["label"]:
            out.append({"text": r["text"], "label": r["label"], "predicted": labels[k], "p": round(float(p[k]), 4)})
    return sorted(out, key=lambda m: -m["p"])


def main(argv=None) -> int:
    from bench import served_classifier
    from tasks import build_data
    from tasks.plans import group_value

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--group", help="only rows of this group (a language, a style), where the task scores groups")
    p.add_argument("--out", help="write the misses here as JSON lines (default: print them)")
    a = p.parse_args(argv)
    task, mv, backend = served_classifier(p, a.task)
    group_by = task.evaluation.group_by
    rows = [r for r in build_data(a.task).val if not a.group or group_value(r, group_by) == a.group]
    if not rows:
        p.error(f"no validation rows in group {a.group!r}")
    labels = [backend.labels[i] for i in range(len(backend.labels))]
    found = misses(rows, backend.model.predict_proba([r["text"] for r in rows]), labels)
    print(f"{a.task} {mv.version}: {len(found)} misses of {len(rows)} validation rows"
          + (f" ({a.group})" if a.group else "") + f", accuracy {1 - len(found) / len(rows):.4f}")
    lines = [json.dumps(m, ensure_ascii=False) for m in found]
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        print(f"written to {a.out}")
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
