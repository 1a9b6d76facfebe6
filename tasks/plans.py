"""How a task is trained and judged: its training recipe, its held-out evaluation plan and its target.

Plain dataclasses (no torch, no ONNX): each task module declares them, `export/` carries them out.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable


@dataclass(frozen=True)
class TrainConfig:
    # the pinned base (export/base_files.py BASES) this task is fine-tuned on: the one that won on validation
    base: str = "smollm2-135m"
    max_steps: int = 300
    batch_size: int = 8
    lr: float = 2e-4
    warmup_steps: int = 20
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    max_len: int = 192  # longer examples are skipped, not cut (a cut target teaches the wrong thing)
    train_examples: int = 4000  # how many training examples are drawn (fixed seed)
    time_budget_s: float = 2400.0  # a safety stop; the step count, not the clock, sizes a run
    seed: int = 0
    # classifiers: weight the loss by inverse class frequency (macro-F1 counts the rare class as much)
    balance_classes: bool = False
    # classifiers: score the validation split every N steps and keep the best adapter (0: keep the last)
    eval_every: int = 0
    # the validation metric that step selection maximises (a key of the task's metric)
    select_metric: str = "accuracy"
    # classifiers: tokens of each validation text read while selecting the step (0: the served length, 256). A
    # shorter cut makes each validation pass cheaper: SmolLM2 spends 2-3 tokens per Chinese character, and a pass
    # over 800 reviews at 256 tokens took ~5.5 minutes of a 50-minute run
    val_max_tokens: int = 0
    # draw the training examples evenly across the values of this row field or option (e.g. "source", "style"),
    # round robin, so a small source is not drowned by a big one; "" draws uniformly
    balance_by: str = ""
    # batch examples of similar length together (shuffled in pools of 32 batches): less padding when lengths
    # differ a lot, e.g. generation's quotes (~60 tokens) and Chinese poems (~200)
    group_by_length: bool = False

    def scaled(self, factor: float) -> "TrainConfig":
        """A bigger run for a GPU host: more steps and data, same recipe."""
        return replace(self, max_steps=int(self.max_steps * factor), train_examples=int(self.train_examples * factor),
                       time_budget_s=self.time_budget_s * factor)


# -- targets: (tuned, base, baseline) metrics -> a one-line verdict starting "met" or "MISSED" ---------------
Verdict = Callable[[dict, dict, dict], str]


def at_least(metric: str, value: float) -> Verdict:
    def verdict(tuned: dict, base: dict, baseline: dict) -> str:
        got = tuned[metric]
        return f"{'met' if got >= value else 'MISSED'}: {metric} {got:.3f} (target >= {value})"
    return verdict


def at_least_with_recall(metric: str, value: float, recall: float) -> Verdict:
    """`metric` at least `value`, and every class's recall at least `recall` (no class given up for the others)."""
    def verdict(tuned: dict, base: dict, baseline: dict) -> str:
        got = tuned[metric]
        recalls = {k.removeprefix("recall "): v for k, v in tuned.items() if k.startswith("recall ")}
        ok = got >= value and bool(recalls) and min(recalls.values()) >= recall
        return f"{'met' if ok else 'MISSED'}: {metric} {got:.3f} (target >= {value}); recall " + \
            ", ".join(f"{k} {v:.2f}" for k, v in recalls.items()) + f" (target >= {recall} each)"
    return verdict


def gain_over_best(metric: str, points: float) -> Verdict:
    """At least `points` (a fraction) above the better of the base model and the baseline."""
    def verdict(tuned: dict, base: dict, baseline: dict) -> str:
        got = tuned[metric]
        margin = min(got - base.get(metric, 0), got - baseline.get(metric, 0))
        return f"{'met' if margin >= points else 'MISSED'}: {metric} {got:.3f}, {margin * 100:+.1f} pts over the " \
               f"better of base and baseline (target +{points * 100:.0f})"
    return verdict


def gain_over_base_per_group(metric: str, points: float) -> Verdict:
    """At least `points` above the base model in every group (e.g. every translation direction)."""
    def verdict(tuned: dict, base: dict, baseline: dict) -> str:
        groups = [k for k in tuned if isinstance(tuned[k], dict) and metric in tuned[k]]
        gains = {g: tuned[g][metric] - base[g][metric] for g in groups}
        ok = all(v >= points for v in gains.values())
        return f"{'met' if ok else 'MISSED'}: {metric} gain over base " + \
            ", ".join(f"{g} {v:+.1f}" for g, v in gains.items()) + f" (target +{points:.0f} each direction)"
    return verdict


def at_least_per_group(metric: str, targets: dict[str, float]) -> Verdict:
    """`metric` at least the group's own target in every group (e.g. chrF per translation direction)."""
    def verdict(tuned: dict, base: dict, baseline: dict) -> str:
        got = {g: tuned[g][metric] for g in targets if isinstance(tuned.get(g), dict)}
        ok = len(got) == len(targets) and all(got[g] >= targets[g] for g in got)
        return f"{'met' if ok else 'MISSED'}: {metric} " + ", ".join(
            f"{g} {got[g]:.3g} ({'met' if got[g] >= targets[g] else 'missed'} >= {targets[g]:g})" for g in got) + \
            "".join(f", {g} not measured" for g in targets if g not in got)
    return verdict


def relative_drop(metric: str, fraction: float) -> Verdict:
    """A lower-is-better metric (perplexity) at least `fraction` below the base model's."""
    def verdict(tuned: dict, base: dict, baseline: dict) -> str:
        got = tuned[metric]
        drop = 1 - got / base[metric]
        return f"{'met' if drop >= fraction else 'MISSED'}: {metric} {got:.2f} vs base {base[metric]:.2f} " \
               f"({drop:.0%} lower; target >= {fraction:.0%})"
    return verdict


@dataclass(frozen=True)
class EvalPlan:
    """What `python -m export evaluate` does for a task, besides the generic part (serve every held-out row
    through the ONNX model, score with the task's metric, compare with the zero-shot base and a baseline)."""

    size: int  # held-out examples read (generation costs ~1 s an example on 2 CPU cores)
    metric: str  # the headline metric (a key of the task's metric output)
    verdict: Verdict  # the target
    # "predict": answer each row, score answers with the task metric; "perplexity": mean NLL of each target
    # given its prompt, scored with the task metric (which then takes (nlls, token counts))
    scoring: str = "predict"
    # an option whose values are scored separately (translation: direction; generation: style); predict
    # scoring also balances the rows across its values
    group_by: str = ""
    # (held-out rows, n) -> the rows to score, when the first n is not a fair sample
    select_rows: Callable[[list[dict], int], list[dict]] | None = None
    # (splits, rows) -> (description, metrics): the trivial baseline beside base and fine-tune; classifiers
    # default to TF-IDF + logistic regression on the same training split
    baseline: Callable[..., tuple[str, dict]] | None = None
    # classifiers' TF-IDF baseline: add character 1-3 grams to the word ones (text without spaces, e.g. Chinese)
    char_ngrams: bool = False
    # (rows, answers) -> more metrics (e.g. the QA hand-over rates); answers are the served model's (perplexity
    # scoring: sampled with a fixed seed for the rows `sampled_rows` picks, e.g. generation's poem form)
    extra_scores: Callable[[list[dict], list[str]], dict] | None = None
    sampled_rows: Callable[[list[dict]], list[dict]] | None = None
    # (fine-tuned metrics, base metrics) -> the result for a user, no metric names: "it picked the right label
    # 87% of the time (the untuned model: 57%)"; the About tab wraps it with the size and the verdict
    in_words: Callable[[dict, dict], str] | None = None


def percent(x: float) -> str:
    return f"{x * 100:.0f}%"


def by_group(metric: Callable, rows: list[dict], preds: list, option: str, reference: str = "target") -> dict:
    """The metric on each group's rows (a value of `option`), each row's `reference` field the right answer."""
    out: dict = {}
    for g in sorted({group_value(r, option) for r in rows}):
        idx = [i for i, r in enumerate(rows) if group_value(r, option) == g]
        out[g] = metric([preds[i] for i in idx], [rows[i][reference] for i in idx])
    return out


def per_group(metric: Callable, rows: list[dict], preds: list, option: str) -> dict:
    """The metric per value of `option` (nested dicts), plus each number averaged over the groups (a generation
    task's directions count alike however many rows each has)."""
    import numpy as np

    out = by_group(metric, rows, preds, option)
    if not out:
        raise ValueError("no held-out rows to evaluate")
    first = next(iter(out.values()))
    for k in first:
        out[k] = float(np.mean([v[k] for v in out.values()]))
    return out


_REQUIRED = object()


def group_value(row: dict, key: str, default=_REQUIRED) -> str:
    """A row's group: a field of its own (a classifier row's "lang") or one of its options (a direction); without
    a `default`, a row that has neither is an error."""
    if key in row:
        return row[key]
    if default is _REQUIRED:
        return row["options"][key]
    return (row.get("options") or {}).get(key, default)


def balanced(rows: list[dict], n: int, option: str | Callable[[dict], str]) -> list[dict]:
    """Up to n rows, the same number for each value of `option` (a control's name, or a function of the row),
    in file order."""
    key = option if callable(option) else lambda r: group_value(r, option)
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(key(r), []).append(r)
    k = n // max(len(by), 1)
    return [r for g in sorted(by) for r in by[g][:k]]


def seeded_balanced(rows: list[dict], n: int, option: str | Callable[[dict], str]) -> list[dict]:
    """balanced() over a fixed shuffle (seed 0): a sample that does not take one document's rows first when the
    split keeps a document's rows together."""
    import random

    return balanced(random.Random(0).sample(rows, len(rows)), n, option)
