"""Evaluate a task on its held-out split: the fine-tuned model, the zero-shot base model and a simple baseline,
all through the serving path (ONNX Runtime, the served precision)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from runtime.models import Backend, ModelSet
from runtime import registry
from runtime.registry import ModelKind
from tasks import TaskKind
from tasks.plans import balanced, by_group, per_group

log = logging.getLogger(__name__)


@dataclass
class _Fixed:
    """A ModelSet stand-in that serves one given backend for every task."""

    backend: Backend

    def get(self, task: str) -> Backend:
        return self.backend

    peek = get


def open_version(models_dir, mv: registry.ModelVersion, precision: str = "auto",
                 task: str | None = None) -> Backend:
    """`mv` opened as serving opens it (prompt-prefix cache, decode graph and, for `task`, its merged decode graph
    as set), in `precision`. A merged decode graph is open before the first answer (serving opens it in the
    background)."""
    from config import settings

    s = settings()
    return ModelSet(models_dir, "auto", precision, prefix_cache_mb=s.prefix_cache_mb, decode_graph=s.decode_graph,
                    merged_decode=s.merged_decode, background=False, lookahead=s.lookahead).open(mv, task)


def _service(task, backend, settings):
    from serving.service import Service

    return Service(_Fixed(backend), settings, tasks={task.name: task}, seed=0)  # sampled answers repeat


def predict_labels(task, backend, settings, texts) -> list[str]:
    if backend.version.kind == ModelKind.CLASSIFIER:
        probs = backend.model.predict_proba(texts)
        return [backend.labels[int(i)] for i in probs.argmax(-1)]
    svc = _service(task, backend, settings)
    return [next(svc.run(task.name, t)).text for t in texts]


def generate_all(task, backend, settings, rows) -> list[str]:
    svc = _service(task, backend, settings)
    out = []
    for r in rows:
        *_, last = svc.run(task.name, r["text"], **(r.get("options") or {}))
        out.append(last.text)
    return out


def target_nll(task, backend, settings, rows) -> tuple[list[float], list[int], list[int]]:
    """Mean negative log-likelihood of each target's continuation given its prompt (for perplexity), the number of
    tokens it is the mean of, and the characters they spell (for a perplexity that two tokenizers share)."""
    from runtime.lm import log_softmax
    from serving.prompt import render_prompt

    lm, tok = backend.model, backend.model.tokenizer
    nlls, counts, chars = [], [], []
    for r in rows:
        prompt = render_prompt(tok, task.build_messages(r["text"], task.options(r.get("options") or {})),
                               task.answer_prefix)
        p_ids = tok(prompt, add_special_tokens=False).input_ids
        enc = tok(r["target"], add_special_tokens=False, return_offsets_mapping=True)
        t_ids = enc.input_ids + [tok.eos_token_id]
        # only the continuation counts: a target that repeats the user's text first (a poem's given first line)
        # would otherwise be scored on words the model was shown
        echo = len(r["text"]) if r["target"].startswith(r["text"]) else 0
        scored = np.asarray([start >= echo for start, _ in enc.offset_mapping] + [True])
        ids = np.asarray([p_ids + t_ids], np.int64)
        n = ids.shape[1]
        logits, _ = lm.forward(ids, np.ones((1, n), np.int64), lm.empty_past(1), np.arange(n)[None, :])
        lp = log_softmax(logits[0, len(p_ids) - 1:n - 1])[np.arange(len(t_ids)), t_ids][scored]
        nlls.append(float(-lp.mean()))
        counts.append(len(lp))
        chars.append(len(r["target"]) - echo + 1)  # + 1: the end-of-text token, scored like a character
    return nlls, counts, chars


def with_groups(task, group_by: str, rows: list[dict], preds: list[str]) -> dict:
    """A classifier's metric over all rows pooled, and per group (e.g. per language) when the plan has one."""
    m = task.metric(preds, [r["label"] for r in rows])
    if group_by:
        m.update(by_group(task.metric, rows, preds, group_by, reference="label"))
    return m


def baseline(task, splits, rows) -> tuple[str, dict]:
    """The task's trivial baseline (its plan's), or for classifiers TF-IDF + logistic regression."""
    plan = task.evaluation
    if plan.baseline is not None:
        return plan.baseline(splits, rows)
    if task.kind == TaskKind.CLASSIFY:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union

        features = [TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)]
        if plan.char_ngrams:
            features.append(TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True))
        clf = make_pipeline(make_union(*features), LogisticRegression(max_iter=2000, C=4.0))
        clf.fit([r["text"] for r in splits.train], [r["label"] for r in splits.train])
        name = "TF-IDF (word 1-2 grams" + (", character 1-3 grams" if plan.char_ngrams else "") + \
            ") + logistic regression on the same training split"
        return name, with_groups(task, plan.group_by, rows, list(clf.predict([r["text"] for r in rows])))
    return "n/a (compared with the base model)", {}


def majority_class(task, splits, rows) -> dict:
    """The trivial classifier: always the label most frequent in the training split, scored on `rows`."""
    from collections import Counter

    label = Counter(r["label"] for r in splits.train).most_common(1)[0][0]
    return {"label": label, **with_groups(task, task.evaluation.group_by, rows, [label] * len(rows))}


def score(task, backend, settings, rows) -> dict:
    t0 = time.time()
    plan = task.evaluation
    if task.kind == TaskKind.CLASSIFY:
        preds = predict_labels(task, backend, settings, [r["text"] for r in rows])
        m = with_groups(task, plan.group_by, rows, preds)
    elif plan.scoring == "perplexity":
        nlls, counts, chars = target_nll(task, backend, settings, rows)
        m = task.metric(nlls, counts)
        # per character, not per token: the figure two bases with different tokenizers can be compared on
        m["char_perplexity"] = float(np.exp(sum(n * c for n, c in zip(nlls, counts)) / max(sum(chars), 1)))
        if plan.group_by:  # one group can hide in the pooled figure (the Chinese poems did)
            groups = [(r.get("options") or {}).get(plan.group_by, "") for r in rows]
            for g in sorted(set(groups) - {""}):
                idx = [i for i, x in enumerate(groups) if x == g]
                m[f"{plan.metric} ({g})"] = task.metric([nlls[i] for i in idx], [counts[i] for i in idx])[plan.metric]
        if plan.extra_scores is not None:
            sampled = plan.sampled_rows(rows) if plan.sampled_rows else rows
            m.update(plan.extra_scores(sampled, generate_all(task, backend, settings, sampled)))
    else:
        preds = generate_all(task, backend, settings, rows)
        m = per_group(task.metric, rows, preds, plan.group_by) if plan.group_by else \
            task.metric(preds, [r["target"] for r in rows])
        m["examples"] = [{"input": r["text"][:300], "reference": r["target"], "output": p}
                         for r, p in list(zip(rows, preds))[:5]]
        if plan.extra_scores is not None:
            m.update(plan.extra_scores(rows, preds))
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

    import serving.service

    key_src = json.dumps([backend.version.version, backend.placement.precision, task.name, rows,
                          inspect.getsource(sys.modules[task.build_messages.__module__]),
                          inspect.getsource(serving.service),  # how a base model is asked (calibration)
                          inspect.getsource(sys.modules[__name__]),  # how it is scored
                          settings.max_input_tokens, settings.max_new_tokens_cap], sort_keys=True, default=str)
    path = Path(models_dir) / "eval_cache" / f"{task.name}-{hashlib.sha256(key_src.encode()).hexdigest()[:16]}.json"
    if path.exists():
        log.info("zero-shot base score for %s from %s", task.name, path)
        return json.loads(path.read_text())
    m = score(task, backend, settings, rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(m, default=float))
    return m


def eval_rows(task, splits, n: int | None = None, split: str = "test") -> list[dict]:
    """The held-out rows to score: the plan's selection, else balanced over its groups, else the first n.
    `split="val"` selects the same way from the validation split (for choices made before the test)."""
    plan = task.evaluation
    n = n or plan.size
    rows = list(getattr(splits, split))
    if plan.select_rows is not None:
        return plan.select_rows(rows, n)
    if plan.group_by and plan.scoring == "predict":
        return balanced(rows, n, plan.group_by)
    return rows[:n]


def verdict(task, tuned: dict, base: dict, base_line: dict) -> str:
    """One line, "met: ..." or "MISSED: ...", from the task's target."""
    if tuned.get(task.evaluation.metric) is None:
        return "not measured"
    return task.evaluation.verdict(tuned, base, base_line)


def served_as(mv: registry.ModelVersion) -> str:
    """How a version reaches the user, in words for its card."""
    import json
    from pathlib import Path

    if not mv.adapter:
        return "merged into the base, exported to ONNX"
    graph = json.loads((Path(mv.path) / "manifest.json").read_text()).get("graph")
    return ("applied at run time (LoRA factors as graph inputs) to the shared base graph: "
            + ("onnxruntime-genai's builder graph, fused attention with the KV cache written in place"
               if graph == "gqa" else "the optimum export"))


def evaluate_task(task, splits, models_dir, tuned_mv, base_mv, settings, n: int | None = None,
                  precision: str = "auto") -> dict:
    rows = eval_rows(task, splits, n)
    tuned_b = open_version(models_dir, tuned_mv, precision, task.name)
    base_b = open_version(models_dir, base_mv, precision)
    log.info("evaluating %s on %d held-out examples (%s)", task.name, len(rows), tuned_b.placement.precision)
    tuned = score(task, tuned_b, settings, rows)
    base = cached_score(task, base_b, settings, rows, models_dir)
    bl_name, bl = baseline(task, splits, rows)
    extra = {"majority_class": majority_class(task, splits, rows)} if task.kind == TaskKind.CLASSIFY else {}
    return {**extra, "task": task.name, "held_out_examples": len(rows), "served_as": served_as(tuned_mv),
            "precision": tuned_b.placement.precision,
            "provider": tuned_b.placement.provider, "fine_tuned": tuned, "base_zero_shot": base,
            "baseline": {"name": bl_name, **bl}, "target": verdict(task, tuned, base, bl),
            "model_version": tuned_mv.version, "base_version": base_mv.version}


__all__ = ["evaluate_task", "eval_rows", "score", "open_version"]
