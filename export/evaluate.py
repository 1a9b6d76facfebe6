"""Evaluate a task on its held-out split: the fine-tuned model, the zero-shot base model and a simple baseline,
all through the serving path (ONNX Runtime, the served precision)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from runtime.models import Backend, ModelSet
from runtime import registry

log = logging.getLogger(__name__)

# How many held-out examples each evaluation reads (generation is ~1 s an example on 2 CPU cores).
EVAL_SIZES = {"sentiment": 1500, "finnews": 350, "summarize": 100, "translate": 80, "generate": 300, "qa": 120}

# The targets: (metric, kind, value). kind "min": at least; "gain_pts": points above base and baseline;
# "rel_drop": relative drop below base at least this much.
TARGETS = {
    "sentiment": ("accuracy", "min", 0.85),
    "finnews": ("macro_f1", "min", 0.80),
    "summarize": ("rougeL", "gain_pts", 0.05),
    "translate": ("chrF", "gain_base_pts", 20.0),
    "generate": ("perplexity", "rel_drop", 0.30),
    "qa": ("rougeL", "qa", 0.5),
}


@dataclass
class _Fixed:
    """A ModelSet stand-in that serves one given backend for every task."""

    backend: Backend

    def get(self, task: str) -> Backend:
        return self.backend

    peek = get


def open_version(models_dir, mv: registry.ModelVersion, precision: str = "auto") -> Backend:
    return ModelSet(models_dir, "auto", precision)._open(mv)


def _service(backend, settings):
    from app.service import Service

    return Service(_Fixed(backend), settings)


def predict_labels(task, backend, settings, texts) -> list[str]:
    if backend.version.kind == "classifier":
        probs = backend.model.predict_proba(texts)
        return [backend.labels[int(i)] for i in probs.argmax(-1)]
    svc = _service(backend, settings)
    return [next(svc.run(task.name, t)).text for t in texts]


def generate_all(task, backend, settings, rows) -> list[str]:
    svc = _service(backend, settings)
    out = []
    for r in rows:
        *_, last = svc.run(task.name, r["text"], **(r.get("options") or {}))
        out.append(last.text)
    return out


def target_nll(task, backend, settings, rows) -> tuple[list[float], list[int]]:
    """Mean negative log-likelihood of each target given its prompt (for perplexity)."""
    from app.service import render_prompt

    lm, tok = backend.model, backend.model.tokenizer
    nlls, counts = [], []
    for r in rows:
        prompt = render_prompt(tok, task.build_messages(r["text"], task.options(r.get("options") or {})),
                               task.answer_prefix)
        p_ids = tok(prompt, add_special_tokens=False).input_ids
        t_ids = tok(r["target"], add_special_tokens=False).input_ids + [tok.eos_token_id]
        ids = np.asarray([p_ids + t_ids], np.int64)
        n = ids.shape[1]
        logits, _ = lm.forward(ids, np.ones((1, n), np.int64), lm._empty_past(1), np.arange(n)[None, :])
        logits = logits[0, len(p_ids) - 1:n - 1].astype(np.float64)
        logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
        lp = logits[np.arange(len(t_ids)), t_ids] - logz
        nlls.append(float(-lp.mean()))
        counts.append(len(t_ids))
    return nlls, counts


def baseline(task, splits, rows) -> tuple[str, dict]:
    """A simple, honest baseline per task."""
    if task.kind == "classify":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
                            LogisticRegression(max_iter=2000, C=4.0))
        clf.fit([r["text"] for r in splits.train], [r["label"] for r in splits.train])
        return "TF-IDF (1-2 grams) + logistic regression on the same training split", \
            task.metric(list(clf.predict([r["text"] for r in rows])), [r["label"] for r in rows])
    if task.name == "summarize":
        from tasks.summarization import lead_baseline

        return "lead: first sentence of the description, cut to 10 words", \
            task.metric([lead_baseline(r["text"]) for r in rows], [r["target"] for r in rows])
    if task.name == "translate":
        return "copy the source text", _per_direction(task, rows, [r["text"] for r in rows])
    if task.name == "generate":
        return "n/a (perplexity is compared with the base model)", {}
    if task.name == "qa":  # the top retrieved entry's answer, or the hand-over line below the threshold
        from tasks.qa import HANDOVER, MIN_SCORE, handed_over, knowledge_base

        hits = knowledge_base().search_many([r["text"] for r in rows], k=1)
        preds = [h[0][0].answer if h[0][1] >= MIN_SCORE else HANDOVER for h in hits]
        ins = [(r, p) for r, p in zip(rows, preds) if r["kb_id"]]
        oos = [p for r, p in zip(rows, preds) if not r["kb_id"]]
        m = task.metric([p for _, p in ins], [r["target"] for r, _ in ins])
        m["handover_rate_out_of_scope"] = sum(handed_over(p) for p in oos) / max(len(oos), 1)
        return "retrieval only: the top entry's answer verbatim (hand-over below the similarity threshold)", m
    return "n/a", {}


def _per_direction(task, rows, preds) -> dict:
    out = {}
    for d in sorted({r["options"]["direction"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["options"]["direction"] == d]
        out[d] = task.metric([preds[i] for i in idx], [rows[i]["target"] for i in idx])
    if not out:
        raise ValueError("no held-out rows to evaluate")
    first = next(iter(out.values()))
    for k in first:
        out[k] = float(np.mean([v[k] for v in out.values()]))
    return out


def score(task, backend, settings, rows) -> dict:
    t0 = time.time()
    if task.kind == "classify":
        m = task.metric(predict_labels(task, backend, settings, [r["text"] for r in rows]), [r["label"] for r in rows])
    elif task.name == "generate":
        nlls, counts = target_nll(task, backend, settings, rows)
        m = task.metric(nlls, counts)
        styles = [(r.get("options") or {}).get("style", "") for r in rows]
        for style in sorted(set(styles) - {""}):  # one style can hide in the pooled figure (the poems did)
            idx = [i for i, st in enumerate(styles) if st == style]
            m[f"perplexity ({style})"] = task.metric([nlls[i] for i in idx], [counts[i] for i in idx])["perplexity"]
    elif task.name == "qa":
        m = qa_scores(task, backend, settings, rows)
    else:
        preds = generate_all(task, backend, settings, rows)
        m = _per_direction(task, rows, preds) if task.name == "translate" else \
            task.metric(preds, [r["target"] for r in rows])
        m["examples"] = [{"input": r["text"][:300], "reference": r["target"], "output": p}
                         for r, p in list(zip(rows, preds))[:5]]
    m["seconds"] = round(time.time() - t0, 1)
    return m


def cached_score(task, backend, settings, rows, models_dir) -> dict:
    """score(), remembered on disk: the zero-shot base model's score only changes with the base export, the
    held-out rows, the task's code and the decoding settings, and costs minutes to recompute each run."""
    import hashlib
    import inspect
    import json
    import sys
    from pathlib import Path

    key_src = json.dumps([backend.version.version, backend.placement.precision, task.name, rows,
                          inspect.getsource(sys.modules[task.build_messages.__module__]),
                          settings.max_input_tokens, settings.max_new_tokens_cap], sort_keys=True, default=str)
    path = Path(models_dir) / "eval_cache" / f"{task.name}-{hashlib.sha256(key_src.encode()).hexdigest()[:16]}.json"
    if path.exists():
        log.info("zero-shot base score for %s from %s", task.name, path)
        return json.loads(path.read_text())
    m = score(task, backend, settings, rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(m, default=float))
    return m


def qa_scores(task, backend, settings, rows) -> dict:
    """Answer ROUGE-L on in-scope questions, hand-over rate on out-of-scope ones, retrieval hit@1."""
    from tasks.qa import handed_over, knowledge_base

    preds = generate_all(task, backend, settings, rows)
    inscope = [(r, p) for r, p in zip(rows, preds) if r["kb_id"]]
    oos = [(r, p) for r, p in zip(rows, preds) if not r["kb_id"]]
    m = task.metric([p for _, p in inscope], [r["target"] for r, _ in inscope])
    m["handover_rate_out_of_scope"] = sum(handed_over(p) for _, p in oos) / max(len(oos), 1)
    m["false_handover_rate_in_scope"] = sum(handed_over(p) for _, p in inscope) / max(len(inscope), 1)
    kb = knowledge_base()
    hits = kb.search_many([r["text"] for r, _ in inscope])
    n_in = max(len(inscope), 1)
    m["retrieval_hit_at_1"] = sum(h[0][0].id == r["kb_id"] for (r, _), h in zip(inscope, hits)) / n_in
    # the entries the GPT is shown (top 3 above the similarity threshold): the right one among them?
    m["retrieval_hit_shown"] = sum(r["kb_id"] in _shown_ids(r) for r, _ in inscope) / n_in
    # which entry the answer really came from: the KB answer closest to it (ROUGE-L), i.e. the GPT as reranker
    m["answered_from_right_entry"] = sum(_closest_entry(kb, p) == r["kb_id"] for r, p in inscope) / n_in
    m["examples"] = [{"input": r["text"], "reference": r["target"], "output": p} for r, p in (inscope[:3] + oos[:2])]
    return m


def _shown_ids(row) -> list[str]:
    import re

    return re.findall(r"^\[([^\]]+)\] Q:", row["options"].get("context", ""), flags=re.M)


def _closest_entry(kb, answer: str) -> str | None:
    from rouge_score import rouge_scorer

    from tasks.qa import handed_over

    if handed_over(answer):
        return None
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    best = max(kb.entries, key=lambda e: scorer.score(e.answer, answer)["rougeL"].fmeasure)
    return best.id


def eval_rows(task, splits, n: int | None = None) -> list[dict]:
    rows = list(splits.test)
    if task.name == "translate":  # both directions, balanced
        by_dir: dict[str, list] = {}
        for r in rows:
            by_dir.setdefault(r["options"]["direction"], []).append(r)
        k = (n or EVAL_SIZES[task.name]) // max(len(by_dir), 1)
        return [r for d in sorted(by_dir) for r in by_dir[d][:k]]
    if task.name == "qa":  # in-scope paraphrases and out-of-scope questions, both
        ins = [r for r in rows if r["kb_id"]]
        oos = [r for r in rows if not r["kb_id"]]
        k = n or EVAL_SIZES[task.name]
        return ins[: k - min(len(oos), k // 4)] + oos[: k // 4]
    return rows[: n or EVAL_SIZES[task.name]]


def verdict(task_name: str, tuned: dict, base: dict, base_line: dict) -> str:
    metric, kind, value = TARGETS[task_name]
    got = tuned.get(metric)
    if got is None:
        return "not measured"
    if kind == "min":
        ok = got >= value
        return f"{'met' if ok else 'MISSED'}: {metric} {got:.3f} (target >= {value})"
    if kind == "gain_pts":
        margin = min(got - base.get(metric, 0), got - base_line.get(metric, 0))
        return f"{'met' if margin >= value else 'MISSED'}: {metric} {got:.3f}, {margin * 100:+.1f} pts over the " \
               f"better of base and baseline (target +{value * 100:.0f})"
    if kind == "gain_base_pts":
        dirs = [k for k in tuned if isinstance(tuned[k], dict) and metric in tuned[k]]
        gains = {d: tuned[d][metric] - base[d][metric] for d in dirs}
        ok = all(g >= value for g in gains.values())
        return f"{'met' if ok else 'MISSED'}: {metric} gain over base " + \
            ", ".join(f"{d} {g:+.1f}" for d, g in gains.items()) + f" (target +{value:.0f} each direction)"
    if kind == "qa":
        r, h, ret = tuned["rougeL"], tuned["handover_rate_out_of_scope"], tuned["retrieval_hit_at_1"]
        ok = r >= 0.5 and h >= 0.8 and ret >= 0.9
        return (f"{'met' if ok else 'MISSED'}: retrieval hit@1 {ret:.1%} (>= 90%; right entry among those shown "
                f"{tuned.get('retrieval_hit_shown', 0):.1%}, answer taken from the right entry "
                f"{tuned.get('answered_from_right_entry', 0):.1%}), answer ROUGE-L {r:.3f} (>= 0.5), "
                f"out-of-scope hand-over {h:.0%} (>= 80%)")
    if kind == "rel_drop":
        drop = 1 - got / base[metric]
        return f"{'met' if drop >= value else 'MISSED'}: perplexity {got:.2f} vs base {base[metric]:.2f} " \
               f"({drop:.0%} lower; target >= {value:.0%})"
    return "?"


def evaluate_task(task, splits, models_dir, tuned_mv, base_mv, settings, n: int | None = None,
                  precision: str = "auto") -> dict:
    rows = eval_rows(task, splits, n)
    tuned_b = open_version(models_dir, tuned_mv, precision)
    base_b = open_version(models_dir, base_mv, precision)
    log.info("evaluating %s on %d held-out examples (%s)", task.name, len(rows), tuned_b.placement.precision)
    tuned = score(task, tuned_b, settings, rows)
    base = cached_score(task, base_b, settings, rows, models_dir)
    bl_name, bl = baseline(task, splits, rows)
    return {"task": task.name, "held_out_examples": len(rows), "precision": tuned_b.placement.precision,
            "provider": tuned_b.placement.provider, "fine_tuned": tuned, "base_zero_shot": base,
            "baseline": {"name": bl_name, **bl}, "target": verdict(task.name, tuned, base, bl),
            "model_version": tuned_mv.version, "base_version": base_mv.version}


def headline(metrics: dict) -> str:
    metric = TARGETS[metrics["task"]][0]
    v = metrics["fine_tuned"].get(metric)
    return f"{metric} {v:.3f}" if isinstance(v, float) else metric


__all__ = ["evaluate_task", "TARGETS", "EVAL_SIZES", "headline"]
