"""The served financial-news model on headlines in other styles than the Guardian's: the project's invented ones.

    python -m bench.finnews_styles

tasks/data/finnews/invented_headlines.csv holds 1,920 headlines invented in four styles the Guardian set lacks
(wire copy, market reports, trade and personal-finance pages, other countries' broadsheets), each written for a
label and labelled again blind (GUIDELINE.md, batch 3). No served model was trained on them, so they are a check
outside the training style; they are easier than real news (each was written to have a clear label). Prints the
task's metrics overall and per style, and what the model predicted.
"""
from __future__ import annotations

import collections
import csv


def run() -> dict:
    from config import settings
    from export.evaluate import open_version, predict_labels
    from runtime import registry
    from tasks import REGISTRY
    from tasks.splits import DATA_FILES

    s = settings()
    task = REGISTRY["finnews"]
    mv = registry.current(s.models_dir, "finnews")
    if mv is None:
        raise SystemExit("no finnews model registered: run `python -m export prepare` first")
    with open(DATA_FILES / "finnews" / "invented_headlines.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    preds = predict_labels(task, open_version(s.models_dir, mv), s, [r["headline"] for r in rows])
    gold = [r["written_as"] for r in rows]
    out = {"version": mv.version, "all": task.metric(preds, gold), "predicted": dict(collections.Counter(preds))}
    for style in sorted({r["style"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["style"] == style]
        out[style] = task.metric([preds[i] for i in idx], [gold[i] for i in idx])
    return out


def main() -> int:
    res = run()
    print(f"{res['version']} on {sum(res['predicted'].values())} invented headlines; predicted {res['predicted']}")
    print("| style | accuracy | macro-F1 | recall negative | recall neutral | recall positive |\n|---|---|---|---|---|---|")
    for style, m in res.items():
        if isinstance(m, dict) and "macro_f1" in m:
            print(f"| {style} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | {m['recall negative']:.2f} | "
                  f"{m['recall neutral']:.2f} | {m['recall positive']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
