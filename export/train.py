"""Fine-tune the base GPT for one task with LoRA (classifiers: LoRA + a trained score head), on CPU or GPU.

Why LoRA: measured on sentiment on 2 CPU cores, a LoRA run reached 85.5% in 20 minutes while a frozen-bottom
full fine-tune reached 83.7% and left an 81 MB delta; LoRA adapters ship as a few MB.
Each task's recipe (TrainConfig) is declared in its own module, tasks/<task>.py.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

from runtime.lm import CLASSIFIER_MAX_TOKENS
from tasks import TaskKind
from tasks.plans import TrainConfig, group_value

log = logging.getLogger(__name__)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def config_for(task, scale: float = 1.0, steps: int | None = None, time_budget: float | None = None,
               eval_every: int | None = None, lr: float | None = None) -> TrainConfig:
    """The task's own training recipe (declared in its module), scaled or overridden for this run."""
    cfg = task.train.scaled(scale) if scale != 1.0 else task.train
    if steps:
        cfg = replace(cfg, max_steps=steps)
    if time_budget:
        cfg = replace(cfg, time_budget_s=time_budget)
    if eval_every:
        cfg = replace(cfg, eval_every=eval_every)
    if lr:
        cfg = replace(cfg, lr=lr)
    return cfg


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX). There, bf16 autocast made a LoRA step of
    Qwen 0.5B 1.6x faster (batch 16 x 40 tokens, 2 cores of an AMD EPYC: 4.5 s against 7.2 s in fp32); elsewhere
    PyTorch emulates bf16 and it would be slower. NLPAPP_TRAIN_BF16=0 turns it off."""
    if os.environ.get("NLPAPP_TRAIN_BF16", "1") == "0":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def _autocast(device):
    """bf16 autocast where the hardware has it (any CUDA device here, a CPU by cpu_has_bf16), else a no-op; and
    whether it is on."""
    import torch

    on = device.type == "cuda" or cpu_has_bf16()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on), on


def rows_drawn(facts: dict) -> list[int]:
    """The training rows [first, end) a run drew, in the seeded drawing order (runs recorded before the field drew
    from the first row)."""
    return facts.get("rows_drawn") or [0, facts["config"]["train_examples"]]


def earlier_runs(facts: dict) -> list[tuple[str, dict]]:
    """(version, run facts) of each adapter a continued run went on from, newest first; [] for a fresh run."""
    runs, link = [], facts.get("continued_from")
    while link:
        runs.append((link["version"], link["facts"]))
        link = link["facts"].get("continued_from")
    return runs


def continue_point(task, start_from: Path, splits, base_dir: Path) -> tuple[dict, int]:
    """What a run that goes on from the adapter in `start_from` records of it ({"version", "facts"}), and the first
    training row it has not drawn.

    Rows are drawn in a fixed order (seeded shuffle, then round robin), so a continued run draws the rows after
    the ones the earlier run(s) drew; that only holds on the same training split, which is checked, as is the base
    the adapter was trained on."""
    from export.base_model import base_sha256
    from export.finetuned import adapter_version, base_refusal

    start_from = Path(start_from)
    refusal = base_refusal(start_from, base_sha256(base_dir))
    if refusal:
        raise ValueError(f"{refusal}: train from the base instead")
    facts = json.loads((start_from / "train_facts.json").read_text())
    card = start_from / "data_card.json"
    if card.exists():
        had = json.loads(card.read_text())["splits"]["train"]["sha256_16"]
        now = splits.card()["splits"]["train"]["sha256_16"]
        if had != now:
            raise ValueError(f"{start_from} was trained on another training split ({had}, now {now}): "
                             "train from the base instead")
    # named now: the run's out_dir may be start_from, rewritten at the end
    return {"version": adapter_version(task.name, start_from), "facts": facts}, rows_drawn(facts)[1]


def sft_features(task, tokenizer, example: dict, max_len: int) -> dict | None:
    """Chat-formatted prompt + target; loss only on the answer tokens (and the closing <|im_end|>)."""
    from serving.prompt import render_prompt

    raw = example.get("options") or {}
    options = {**raw, **task.options(raw)}  # keeps what a prepare step added (e.g. retrieved context)
    prompt = render_prompt(tokenizer, task.build_messages(example["text"], options), task.answer_prefix)
    p_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    t_ids = tokenizer(example["target"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    if len(p_ids) + len(t_ids) > max_len:
        return None
    return {"input_ids": p_ids + t_ids, "labels": [-100] * len(p_ids) + t_ids}


def answer_loss(model, ids, mask, labels):
    """The causal-LM loss over the answer tokens, with the output layer run on those positions only.

    Equal to `model(..., labels=labels).loss` (mean over labelled tokens), but the prompt positions never reach
    the output layer: with Qwen's 151,936-token vocabulary that layer is over a quarter of a step's compute
    and most positions are prompt.
    """
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.model(input_ids=ids, attention_mask=mask).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = base.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), target[keep])


def cls_features(task, tokenizer, example: dict, max_len: int) -> dict:
    ids = tokenizer(example["text"], add_special_tokens=False, truncation=True, max_length=max_len).input_ids
    return {"input_ids": ids, "labels": task.labels.index(example["label"])}


def round_robin(rows: list[dict], key) -> list[dict]:
    """Rows interleaved one group at a time (groups by `key`, each in its given order): any prefix holds the groups
    evenly until the smaller ones run out."""
    import itertools

    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return [r for batch in itertools.zip_longest(*groups.values()) for r in batch if r is not None]


def _batch_order(lengths: list[int], batch_size: int, rng: random.Random, group_by_length: bool) -> list[list[int]]:
    """One epoch's batches (indices into the features): shuffled; with group_by_length, sorted by length within
    pools of 32 batches and the batches shuffled again, so each batch holds similar lengths."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        pool = batch_size * 32
        order = [j for i in range(0, len(order), pool) for j in sorted(order[i:i + pool], key=lengths.__getitem__)]
    batches = [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def _batches(features: list[dict], batch_size: int, pad_id: int, seed: int, classify: bool,
             group_by_length: bool = False):
    import torch

    rng = random.Random(seed)
    lengths = [len(f["input_ids"]) for f in features]
    while True:  # endless shuffled epochs; the step budget decides when to stop
        for idx in _batch_order(lengths, batch_size, rng, group_by_length):
            chunk = [features[j] for j in idx]
            width = max(len(f["input_ids"]) for f in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            labels = torch.tensor([f["labels"] for f in chunk]) if classify else \
                torch.full((len(chunk), width), -100, dtype=torch.long)
            for k, f in enumerate(chunk):  # right padding: the classifier head reads the last non-pad token
                n = len(f["input_ids"])
                ids[k, :n] = torch.tensor(f["input_ids"])
                mask[k, :n] = 1
                if not classify:
                    labels[k, :n] = torch.tensor(f["labels"])
            yield ids, mask, labels


def load_extra(path: Path, task) -> list[dict]:
    """Extra training rows from a file or a feedback export folder (its sft.jsonl): input+completion or
    text+target/label columns; rows of other tasks are skipped. A generation row is trained with the options its
    answer was made with (a feedback export's `settings` column: a translation's direction, the entries a
    customer-service answer was shown), or, where a file has none, with what serving would use (extra_options)."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "sft.jsonl"
    if path.suffix == ".jsonl":
        df = pd.read_json(path, lines=True)
    elif path.suffix == ".parquet":
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(path)
    if "task" in df.columns:
        df = df[df["task"] == task.name]
    text_col = "input" if "input" in df.columns else "text"
    target_col = next(c for c in ("completion", "target", "label") if c in df.columns)
    rows = []
    for r in df.to_dict("records"):
        if task.kind == TaskKind.CLASSIFY:
            if r[target_col] in task.labels:
                rows.append({"text": r[text_col], "label": r[target_col]})
        else:
            rows.append({"text": r[text_col], "target": r[target_col],
                         "options": extra_options(task, r[text_col], r.get("settings", r.get("options")))})
    log.info("extra data %s: %d rows for %s", path, len(rows), task.name)
    return rows


def extra_options(task, text: str, recorded) -> dict:
    """The options of an extra row: those recorded with its answer (a dict, or JSON text as a file holds it), else
    the task's defaults with its lookup run now, as serving would (without them every translation row trained as
    English -> Spanish, and a customer-service correction as an answer given with no entry shown)."""
    if isinstance(recorded, str) and recorded.strip():
        try:
            recorded = json.loads(recorded)
        except ValueError:
            raise ValueError(f"{task.name}: an extra row's settings are not JSON: {recorded[:80]!r}") from None
    if isinstance(recorded, dict) and recorded:
        return recorded
    options = task.options({})
    return task.lookup(text, options) if task.lookup is not None else options


class _ValSelector:
    """Scores a classifier on the validation split during training and keeps the best trainable weights."""

    def __init__(self, task, tok, val: list[dict], device, max_tokens: int = 0, autocast=None):
        import contextlib

        self.task, self.tok, self.device, self.rows = task, tok, device, val
        self.autocast = autocast or contextlib.nullcontext()  # the training steps' precision
        self.max_tokens = max_tokens or CLASSIFIER_MAX_TOKENS
        self.texts = [r["text"] for r in val]
        # the plan's groups (sentiment: language), scored apart at every scored step: a pooled figure can hide one
        self.group_by = task.evaluation.group_by if task.evaluation else ""
        self.per_group: dict[str, float] = {}
        self.metric = task.train.select_metric
        self.curve: list[tuple[int, float]] = []
        # each scored step's groups too: step 0 of a --continue run is the adapter it started from, so a rule
        # ("Chinese not below the start's") compares figures of one run, on one machine's numerics
        self.group_curve: list[tuple[int, dict[str, float]]] = []
        self.best: tuple[float, int, dict] | None = None

    def predict(self, model) -> list[str]:
        import torch

        model.eval()
        # batches of similar length: a batch is padded to its longest text, and one 1,000-character review in a
        # batch of short ones made scoring the validation split several times slower
        order = sorted(range(len(self.texts)), key=lambda i: len(self.texts[i]))
        preds: list[str] = [""] * len(self.texts)
        with torch.no_grad(), self.autocast:
            for b in range(0, len(order), 32):
                idx = order[b:b + 32]
                enc = self.tok([self.texts[i] for i in idx], padding=True, truncation=True,
                               max_length=self.max_tokens, return_tensors="pt", padding_side="right").to(self.device)
                for i, j in zip(idx, model(**enc).logits.argmax(-1)):
                    preds[i] = self.task.labels[int(j)]
        model.train()
        return preds

    def _scores(self, model) -> tuple[float, dict[str, float]]:
        """The metric over the validation split, and each group's (empty where the plan has no groups)."""
        from export.evaluate import with_groups

        m = with_groups(self.task, self.group_by, self.rows, self.predict(model))
        return float(m[self.metric]), {g: round(float(v[self.metric]), 4) for g, v in m.items()
                                       if isinstance(v, dict)}

    def score(self, model, step: int) -> None:
        value, groups = self._scores(model)
        self.curve.append((step, round(value, 4)))
        if groups:
            self.group_curve.append((step, groups))
        if self.best is None or value > self.best[0]:
            state = {k: v.detach().cpu().clone() for k, v in model.named_parameters() if v.requires_grad}
            self.best = (value, step, state)
        log.info("step %d: validation %s %.4f%s (best %.4f at step %d)", step, self.metric, value,
                 "".join(f", {g} {v:.4f}" for g, v in groups.items()), self.best[0], self.best[1])

    def restore_best(self, model) -> None:
        params = dict(model.named_parameters())
        for k, v in self.best[2].items():
            params[k].data.copy_(v.to(params[k].device))
        # re-scored: proves the restore (equals the best step's score, each group's too)
        self.restored, self.per_group = self._scores(model)
        model.eval()

    def facts(self) -> dict:
        return {"metric": self.metric, "n": len(self.texts), "max_tokens": self.max_tokens,
                "selected_step": self.best[1], "selected_value": round(self.best[0], 4),
                "restored_value": round(self.restored, 4), "curve": self.curve,
                **({"per_group": self.per_group, "group_curve": self.group_curve} if self.per_group else {})}


def train(task, splits, base_dir: Path, out_dir: Path, cfg: TrainConfig, extra: list[dict] | None = None,
          start_from: Path | None = None) -> dict:
    """Train a LoRA adapter (and score head) for `task`; save it in fp16 to out_dir. Returns run facts.

    start_from: an adapter folder (of this task, on this base) to go on training instead of a fresh adapter, on the
    training rows after those it was trained on; its validation score counts as step 0 of the selection, so the
    saved adapter is never worse on validation than the one the run started from."""
    import torch
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    device = _device()
    tok = AutoTokenizer.from_pretrained(base_dir)
    classify = task.kind == TaskKind.CLASSIFY
    pool = list(splits.train)
    random.Random(cfg.seed).shuffle(pool)
    if cfg.balance_by:
        # a row field (summarization's source) or an option (generation's style); feedback rows may have neither
        pool = round_robin(pool, lambda r: str(group_value(r, cfg.balance_by, "")))
    earlier, first = continue_point(task, start_from, splits, base_dir) if start_from else (None, 0)
    if first >= len(pool):
        raise ValueError(f"{start_from} has drawn all {len(pool)} training rows already")
    drawn = [first, min(first + cfg.train_examples, len(pool))]
    pool = pool[drawn[0]:drawn[1]] + list(extra or [])
    make = cls_features if classify else sft_features
    feats = [f for f in (make(task, tok, ex, cfg.max_len) for ex in pool) if f is not None]
    skipped = len(pool) - len(feats)
    if not feats:
        raise ValueError("no training example fits max_len")
    if classify:
        model = AutoModelForSequenceClassification.from_pretrained(
            base_dir, num_labels=len(task.labels), id2label=dict(enumerate(task.labels)),
            label2id={l: i for i, l in enumerate(task.labels)}, dtype=torch.float32)
        model.config.pad_token_id = tok.pad_token_id
        peft_cfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                              lora_dropout=cfg.lora_dropout, target_modules=list(LORA_TARGETS))
    else:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        peft_cfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                              lora_dropout=cfg.lora_dropout, target_modules=list(LORA_TARGETS))
    if start_from:
        model = PeftModel.from_pretrained(model, start_from, is_trainable=True)
        saved = model.peft_config["default"]
        if saved.modules_to_save:  # PEFT appends the classifier head's names again on each load
            saved.modules_to_save = list(dict.fromkeys(saved.modules_to_save))
        for p in model.parameters():  # the adapter ships in fp16; it trains in fp32 like a fresh one
            if p.requires_grad:
                p.data = p.data.float()
        model = model.to(device)
    else:
        model = get_peft_model(model, peft_cfg).to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)

    def lr_at(step):  # linear warmup, cosine decay to 10%
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    batches = _batches(feats, cfg.batch_size, tok.pad_token_id, cfg.seed, classify, cfg.group_by_length)
    t0, tokens, losses, step = time.time(), 0, [], 0
    bar = tqdm(total=cfg.max_steps, desc=f"train {task.name}", unit="step", dynamic_ncols=True)
    autocast, bf16 = _autocast(device)
    weight = None
    if classify and cfg.balance_classes:
        counts = torch.bincount(torch.tensor([f["labels"] for f in feats]), minlength=len(task.labels)).float()
        weight = (counts.sum() / (len(task.labels) * counts.clamp(min=1))).to(device)
    selector = (_ValSelector(task, tok, splits.val, device, cfg.val_max_tokens, autocast)
                if classify and cfg.eval_every and splits.val else None)
    if selector and start_from:
        selector.score(model, 0)  # the starting adapter: kept unless a later step beats it
    while step < cfg.max_steps and time.time() - t0 < cfg.time_budget_s:
        ids, mask, labels = (x.to(device) for x in next(batches))
        with autocast:
            if weight is not None:
                logits = model(input_ids=ids, attention_mask=mask).logits
                loss = torch.nn.functional.cross_entropy(logits.float(), labels, weight=weight)
            elif classify:
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            else:
                loss = answer_loss(model, ids, mask, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
        losses.append(float(loss.detach()))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}", tok_s=f"{tokens / (time.time() - t0):.0f}")
        if selector and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            selector.score(model, step)
    bar.close()
    seconds = time.time() - t0
    model.eval()
    if selector and step and (not selector.curve or selector.curve[-1][0] != step):
        selector.score(model, step)  # stopped by the time budget between two scores: the last steps count too
    if selector and selector.best:
        selector.restore_best(model)
    for p in model.parameters():  # ship the adapter in fp16: half the size, no measurable loss after merge
        if p.requires_grad:
            p.data = p.data.half()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    facts = {"steps": step, "max_steps": cfg.max_steps, "seconds": round(seconds, 1), "tokens": tokens,
             "tokens_per_s": round(tokens / seconds, 1), "examples_used": len(feats),
             "examples_skipped_too_long": skipped, "epochs": round(step * cfg.batch_size / len(feats), 3),
             "trainable_params": trainable, "final_loss_avg20": round(sum(losses[-20:]) / len(losses[-20:]), 4),
             "first_loss_avg20": round(sum(losses[:20]) / len(losses[:20]), 4), "device": str(device),
             "config": asdict(cfg), "extra_rows": len(extra or []), "rows_drawn": drawn,
             "autocast": "bf16" if bf16 else "off"}
    if earlier is not None:
        facts["continued_from"] = earlier
    if selector and selector.best:
        facts["val_selection"] = selector.facts()
    (out_dir / "train_facts.json").write_text(json.dumps(facts, indent=1))
    log.info("trained %s: %s", task.name, facts)
    return facts
