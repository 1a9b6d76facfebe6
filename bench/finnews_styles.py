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
    import argparse

    from bench import served_classifier
    from config import settings
    from export.evaluate import predict_labels, with_groups
    from tasks.splits import DATA_FILES

    task, mv, backend = served_classifier(argparse.ArgumentParser(prog="python -m bench.finnews_styles"), "finnews")
    with open(DATA_FILES / "finnews" / "invented_headlines.csv", encoding="utf-8") as f:
        rows = [{"text": r["headline"], "label": r["written_as"], "style": r["style"]} for r in csv.DictReader(f)]
    preds = predict_labels(task, backend, settings(), [r["text"] for r in rows])
    m = with_groups(task, "style", rows, preds)  # the evaluation's own per-group scoring (as per language)
    styles = {k: m.pop(k) for k in list(m) if isinstance(m[k], dict)}
    return {"version": mv.version, "all": m, **styles, "predicted": dict(collections.Counter(preds))}


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
