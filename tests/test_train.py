"""A tiny training run end to end (tiny model, seconds): LoRA fine-tune, merge, ONNX export, register, live switch."""
import json

import pytest

from tasks import REGISTRY
from tasks.splits import Splits


def _splits(task):
    if task.kind == "classify":
        rows = [{"text": f"headline number {i} about shares", "label": task.labels[i % len(task.labels)]}
                for i in range(48)]
    else:
        rows = [{"text": f"text number {i}", "target": f"summary {i}", "options": {}} for i in range(48)]
    return Splits(rows[:40], rows[40:44], rows[44:])


@pytest.mark.parametrize("name", ["finnews", "summarize"])
def test_tiny_train_merge_export_register_and_switch(name, tiny_lm_dir, tmp_path):
    from export.finetuned import adapter_version, build_tuned_version
    from export.train import TrainConfig, train
    from runtime import registry
    from runtime.models import ModelSet

    task = REGISTRY[name]
    models = tmp_path / "models"
    adapter = tmp_path / "adapter"
    cfg = TrainConfig(max_steps=6, batch_size=4, max_len=96, warmup_steps=2, lr=1e-3, time_budget_s=120)
    facts = train(task, _splits(task), tiny_lm_dir, adapter, cfg)
    assert facts["steps"] == 6 and facts["trainable_params"] > 0
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "adapter_config.json").exists()
    assert json.loads((adapter / "train_facts.json").read_text())["steps"] == 6

    # a base version serves first; registering the tuned one switches the task live, without a restart
    from export.onnx_export import export_model

    base = export_model(tiny_lm_dir, models / "onnx", "lm", ["fp32"])
    registry.register(models, name, registry.ModelVersion("base-tiny", "lm", str(base.path)))
    ms = ModelSet(models, "cpu", "fp32")
    assert ms.load(name).version.version == "base-tiny"
    mv = build_tuned_version(task, tiny_lm_dir, models, folder=adapter)
    assert mv.version == adapter_version(name, adapter) and mv.tuned
    assert ms.refresh() == [name]
    backend = ms.get(name)
    assert backend.version.version == mv.version
    assert backend.version.kind == ("classifier" if task.kind == "classify" else "lm")
    if task.kind == "classify":
        assert backend.labels == list(task.labels)
        probs = backend.model.predict_proba(["shares jump"])
        assert probs.shape == (1, len(task.labels))


def test_classifier_keeps_the_best_validation_step_with_balanced_loss(tiny_lm_dir, tmp_path):
    """Validation-based selection: the adapter saved is the one of the best-scoring step, and the run says so."""
    from export.train import TrainConfig, train

    task = REGISTRY["finnews"]
    rows = [{"text": f"{'shares soar' if i % 3 == 0 else 'shares slump'} report {i}",
             "label": "positive" if i % 3 == 0 else "negative"} for i in range(60)]
    cfg = TrainConfig(max_steps=8, batch_size=4, max_len=32, warmup_steps=2, lr=1e-3, balance_classes=True,
                      eval_every=3)
    facts = train(task, Splits(rows[:48], rows[48:], []), tiny_lm_dir, tmp_path / "a", cfg)
    sel = facts["val_selection"]
    assert [s for s, _ in sel["curve"]] == [3, 6, 8] and sel["metric"] == "macro_f1" and sel["n"] == 12
    best = max(v for _, v in sel["curve"])
    assert sel["selected_value"] == best == sel["restored_value"]
    assert (sel["selected_step"], best) in [tuple(x) for x in sel["curve"]]


def test_a_run_stopped_by_its_time_budget_scores_its_last_step_too(tiny_lm_dir, tmp_path):
    """The clock can stop a run between two validation scores: the steps after the last score still count."""
    from export.train import TrainConfig, train

    task = REGISTRY["finnews"]
    rows = [{"text": f"shares {'soar' if i % 2 else 'slump'} {i}", "label": "positive" if i % 2 else "negative"}
            for i in range(40)]
    cfg = TrainConfig(max_steps=100_000, batch_size=4, max_len=32, warmup_steps=1, eval_every=50_000,
                      time_budget_s=2)
    facts = train(task, Splits(rows[:32], rows[32:], []), tiny_lm_dir, tmp_path / "a", cfg)
    assert 0 < facts["steps"] < 50_000 and facts["val_selection"]["curve"][-1][0] == facts["steps"]


def test_validation_selection_scores_each_language_apart_at_the_cut_length(tiny_lm_dir, tmp_path):
    """Sentiment's plan groups by language: the run records each language's validation score at the selected
    step (a pooled figure can hide one), and the validation texts are cut at the recipe's length."""
    from export.train import TrainConfig, train

    task = REGISTRY["sentiment"]
    rows = [{"text": ("great fun " if i % 2 else "awful bore ") * (1 + i % 5), "lang": "English",
             "label": "positive" if i % 2 else "negative"} for i in range(24)] + \
           [{"text": ("很好很喜欢" if i % 2 else "很差不推荐") * (1 + i % 5), "lang": "Chinese",
             "label": "positive" if i % 2 else "negative"} for i in range(24)]
    val = rows[20:24] + rows[44:48]
    cfg = TrainConfig(max_steps=4, batch_size=4, max_len=32, warmup_steps=1, lr=1e-3, eval_every=2,
                      balance_by="lang", val_max_tokens=16)
    sel = train(task, Splits(rows[:20] + rows[24:44], val, []), tiny_lm_dir, tmp_path / "a", cfg)["val_selection"]
    assert sel["max_tokens"] == 16 and set(sel["per_group"]) == {"English", "Chinese"}
    assert sel["selected_value"] == pytest.approx(sum(sel["per_group"].values()) / 2)  # 4 rows each
    # every scored step has its languages too (step 0 of a --continue run is the adapter it started from)
    at = {step: groups for step, groups in sel["group_curve"]}
    assert [s for s, _ in sel["curve"]] == list(at) and at[sel["selected_step"]] == sel["per_group"]
    for step, value in sel["curve"]:
        assert value == pytest.approx(sum(at[step].values()) / 2, abs=1e-3)


def test_the_card_shows_each_scored_steps_groups():
    """A card's curve gives each group at each scored step, so a continued run's start (step 0) and its kept step
    can be compared language by language; a run recorded before group curves existed keeps its old line."""
    from export.card import _val_selection_lines

    sel = {"metric": "accuracy", "n": 800, "max_tokens": 128, "selected_step": 160, "selected_value": 0.875,
           "restored_value": 0.875, "curve": [[0, 0.87], [160, 0.875]],
           "per_group": {"Chinese": 0.9, "English": 0.86},
           "group_curve": [[0, {"Chinese": 0.9067, "English": 0.8467}], [160, {"Chinese": 0.9, "English": 0.86}]]}
    (line,) = _val_selection_lines(sel)
    assert "kept step 160 (0.875, Chinese 0.900, English 0.860" in line
    assert "Curve: 0: 0.870 (Chinese 0.907, English 0.847), 160: 0.875 (Chinese 0.900, English 0.860)." in line
    (old,) = _val_selection_lines({k: v for k, v in sel.items() if k != "group_curve"})
    assert old.endswith("Curve: 0: 0.870, 160: 0.875.")


def test_compare_bases_records_each_bases_validation_score_in_the_card(tiny_lm_dir, tmp_path, monkeypatch):
    """The base is chosen on validation: each candidate runs the task's recipe; the card shows every score."""
    from dataclasses import replace

    import export.base_model
    import export.finetuned
    import export.pipeline
    import tasks
    from config import settings
    from export.card import _base_comparison_lines
    from export.pipeline import compare_bases
    from export.train import TrainConfig

    task = REGISTRY["finnews"]
    monkeypatch.setitem(tasks.REGISTRY, "finnews", replace(task, train=TrainConfig(
        max_steps=4, batch_size=4, max_len=32, warmup_steps=1, eval_every=2, select_metric="macro_f1")))
    monkeypatch.setattr(tasks, "build_data", lambda name, seed=0: _splits(task))
    bases = []
    monkeypatch.setattr(export.base_model, "prepare_base", lambda b, models_dir: bases.append(b) or tiny_lm_dir)
    monkeypatch.setattr(export.finetuned, "ADAPTERS", tmp_path)
    monkeypatch.setattr(export.pipeline, "settings", lambda: replace(settings(), models_dir=tmp_path / "models"))
    (tmp_path / "finnews").mkdir()
    result = compare_bases("finnews", ["smollm2-135m", "qwen2.5-coder-0.5b"])
    assert bases == ["smollm2-135m", "qwen2.5-coder-0.5b"]  # no committed run here: both were trained
    assert all(r["run"].startswith("best of 4 steps, at step ") and r["run"].endswith(f"models/candidates/finnews-{b}")
               for b, r in result["runs"].items())
    for b in bases:  # each trained adapter is kept, to be released if its base wins, and says its base
        kept = tmp_path / "models" / "candidates" / f"finnews-{b}"
        assert (kept / "adapter_model.safetensors").exists()
        assert json.loads((kept / "train_facts.json").read_text())["config"]["base"] == b
    assert result["chosen"] == "smollm2-135m"
    assert {r["metric"] for r in result["runs"].values()} == {"macro_f1"}
    line, = _base_comparison_lines(tmp_path / "finnews")
    assert "`smollm2-135m` macro_f1" in line and "`qwen2.5-coder-0.5b` macro_f1" in line and "Chosen: `smollm2" in line


@pytest.mark.parametrize("steps_done, reused", [(4, True), (3, False)])
def test_compare_bases_reuses_the_committed_run_whatever_its_time_budget_when_it_ran_every_step(
        steps_done, reused, tiny_lm_dir, tmp_path, monkeypatch):
    """A committed run that finished all its steps is the same recipe under another time budget (and a config
    field added later had its default then); one the clock stopped is not."""
    from dataclasses import asdict, replace

    import export.base_model
    import export.finetuned
    import export.pipeline
    import tasks
    from config import settings
    from export.pipeline import compare_bases
    from export.train import TrainConfig

    task = REGISTRY["finnews"]
    recipe = TrainConfig(max_steps=4, batch_size=4, max_len=32, warmup_steps=1, eval_every=2, select_metric="macro_f1")
    monkeypatch.setitem(tasks.REGISTRY, "finnews", replace(task, train=recipe))
    monkeypatch.setattr(tasks, "build_data", lambda name, seed=0: _splits(task))
    bases = []
    monkeypatch.setattr(export.base_model, "prepare_base", lambda b, models_dir: bases.append(b) or tiny_lm_dir)
    monkeypatch.setattr(export.finetuned, "ADAPTERS", tmp_path)
    monkeypatch.setattr(export.pipeline, "settings", lambda: replace(settings(), models_dir=tmp_path / "models"))
    committed = {k: v for k, v in asdict(recipe).items() if k not in ("val_max_tokens", "balance_by")}
    (tmp_path / "finnews").mkdir()
    (tmp_path / "finnews" / "train_facts.json").write_text(json.dumps({
        "steps": steps_done, "max_steps": 4, "seconds": 1.0, "config": {**committed, "time_budget_s": 60.0},
        "val_selection": {"metric": "macro_f1", "n": 8, "selected_step": 2, "selected_value": 0.5}}))
    result = compare_bases("finnews", ["smollm2-135m", "qwen2.5-coder-0.5b"], time_budget=999.0)
    assert bases == (["qwen2.5-coder-0.5b"] if reused else ["smollm2-135m", "qwen2.5-coder-0.5b"])
    assert result["recipe"]["time_budget_s"] == 999.0
    assert ("committed adapter's run" in result["runs"]["smollm2-135m"]["run"]) == reused


def test_compare_bases_scores_each_untuned_base_on_validation_for_generation(tiny_settings, tiny_models_dir,
                                                                              tmp_path, monkeypatch):
    import export.finetuned
    import export.pipeline
    import export.prepare
    import tasks
    from export.pipeline import compare_bases
    from runtime import registry

    base = registry.current(tiny_models_dir, "qa")  # the tiny base LM stands in for each base's export
    asked = []
    monkeypatch.setattr(export.prepare, "base_version", lambda s, b: asked.append(b) or base)
    monkeypatch.setattr(export.pipeline, "settings", lambda: tiny_settings)
    rows = [{"text": f"hello {i}", "target": f"hola {i}", "options": {"direction": d}}
            for i in range(6) for d in ("English → Spanish", "Spanish → English")]
    monkeypatch.setattr(tasks, "build_data", lambda name, seed=0: Splits(rows, rows[:8], []))
    monkeypatch.setattr(export.finetuned, "ADAPTERS", tmp_path)
    (tmp_path / "translate").mkdir()
    result = compare_bases("translate", ["smollm2-135m", "qwen2.5-coder-0.5b"], n=4)
    assert asked == ["smollm2-135m", "qwen2.5-coder-0.5b"]
    assert all(r["run"] == "untuned, zero-shot" and r["n"] == 4 and r["metric"] == "chrF"
               and "English → Spanish" in r["scores"] for r in result["runs"].values())


def test_training_loss_goes_down_on_a_learnable_task(tiny_lm_dir, tmp_path):
    from export.train import TrainConfig, train

    task = REGISTRY["summarize"]
    rows = [{"text": f"item {i}", "target": "ok", "options": {}} for i in range(32)]
    facts = train(task, Splits(rows, [], []), tiny_lm_dir, tmp_path / "a",
                  TrainConfig(max_steps=30, batch_size=8, max_len=96, warmup_steps=2, lr=3e-3, lora_r=8))
    assert facts["final_loss_avg20"] < facts["first_loss_avg20"]


def test_answer_loss_equals_the_full_causal_lm_loss(tiny_lm_dir, tokenizer):
    """The output layer runs on answer positions only; the loss (and its gradient) is the library's own."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    from export.train import LORA_TARGETS, _batches, answer_loss, sft_features

    task = REGISTRY["translate"]
    rows = [{"text": f"Open file number {i} now", "target": f"Abre el archivo {i}" + " ya" * (i % 3),
             "options": {"direction": "English → Spanish"}} for i in range(4)]
    feats = [sft_features(task, tokenizer, r, 128) for r in rows]
    ids, mask, labels = next(_batches(feats, 4, tokenizer.pad_token_id, 0, False))
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_lm_dir),
                           LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, target_modules=list(LORA_TARGETS)))
    model.eval()  # no dropout: both losses see the same network
    ours = answer_loss(model, ids, mask, labels)
    ours.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    theirs = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    theirs.backward()
    assert (labels != -100).sum() < labels.numel() / 2  # the prompt is most positions: the saving is real
    assert torch.allclose(ours, theirs, atol=1e-5)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(grads[n], p.grad, atol=1e-5), n


def test_round_robin_draws_small_sources_evenly():
    from collections import Counter

    from export.train import round_robin

    rows = [{"source": "big", "i": i} for i in range(90)] + [{"source": "small", "i": i} for i in range(10)]
    mixed = round_robin(rows, lambda r: r["source"])
    assert sorted(map(id, mixed)) == sorted(map(id, rows))  # every row once
    assert Counter(r["source"] for r in mixed[:20]) == {"big": 10, "small": 10}
    assert [r["i"] for r in mixed if r["source"] == "big"] == list(range(90))  # each group keeps its order


def test_length_grouped_batches_cover_every_example_once_with_little_padding():
    import random

    from export.train import _batch_order

    lengths = [random.Random(i).choice([40, 60, 80, 200, 260]) for i in range(800)]

    def padding(batches):
        return sum(len(b) * max(lengths[j] for j in b) - sum(lengths[j] for j in b) for b in batches) / sum(lengths)

    plain = _batch_order(lengths, 8, random.Random(0), group_by_length=False)
    grouped = _batch_order(lengths, 8, random.Random(0), group_by_length=True)
    for batches in (plain, grouped):
        assert sorted(j for b in batches for j in b) == list(range(800))
    assert padding(grouped) < 0.1 < padding(plain)
    assert grouped != sorted(grouped)  # batches still come in shuffled order, not shortest first


def test_every_generation_style_has_training_examples_that_fit(tokenizer):
    """A style whose examples are all longer than max_len is silently never trained (this happened to poems)."""
    from export.train import sft_features
    from tasks.generation import STYLES, build_data
    from tasks.splits import DataMissing

    try:
        splits = build_data(0)
    except DataMissing as e:  # the Debian fortunes are installed by scripts/install_data.sh
        pytest.skip(f"generation data not installed: {e}")
    task, cap = REGISTRY["generate"], REGISTRY["generate"].train.max_len
    fitting = {}
    for r in splits.train:
        if sft_features(task, tokenizer, r, cap) is not None:
            fitting[r["options"]["style"]] = fitting.get(r["options"]["style"], 0) + 1
    present = {r["options"]["style"] for r in splits.train}
    assert present and all(fitting.get(s, 0) >= 0.5 * sum(r["options"]["style"] == s for r in splits.train)
                           for s in present & set(STYLES))


def test_extra_rows_from_a_feedback_export_keep_the_options_their_answer_was_made_with(tmp_path, tokenizer):
    from feedback.export import write_export
    from export.train import load_extra, sft_features

    shown = {"context": "[k7] Q: Do you ship abroad?\nA: Yes, to 30 countries.", "sources": ["k7"]}
    rows = [{"id": "a1", "task": "sentiment", "input_text": "great", "output": "negative", "prompt": "p",
             "messages": None, "model_version": "v", "rating": -1, "correction": "positive", "comment": None,
             "settings": {"temperature": 0.0}},
            {"id": "a2", "task": "qa", "input_text": "Do you ship to Peru?", "output": "Yes, we do.", "prompt": "p",
             "messages": None, "model_version": "v", "rating": 1, "correction": None, "comment": None,
             "settings": {"temperature": 0.0, **shown}},
            {"id": "a3", "task": "translate", "input_text": "Save the file.", "output": "Guarda el archivo.",
             "prompt": "p", "messages": None, "model_version": "v", "rating": -1, "correction": "保存文件。",
             "comment": None, "settings": {"temperature": 0.0, "direction": "English → Chinese"}}]
    write_export(rows, tmp_path)
    assert load_extra(tmp_path, REGISTRY["sentiment"]) == [{"text": "great", "label": "positive"}]
    (qa,) = load_extra(tmp_path, REGISTRY["qa"])
    assert (qa["text"], qa["target"], qa["options"]["context"]) == ("Do you ship to Peru?", "Yes, we do.",
                                                                      shown["context"])
    (tr,) = load_extra(tmp_path, REGISTRY["translate"])
    assert (tr["target"], tr["options"]["direction"]) == ("保存文件。", "English → Chinese")
    # trained as it was asked: into Chinese (the default direction is English -> Spanish)
    prompt = tokenizer.decode(sft_features(REGISTRY["translate"], tokenizer, tr, 512)["input_ids"])
    assert "into Chinese" in prompt and "Spanish" not in prompt


def test_extra_rows_without_recorded_options_get_what_serving_would_use(tmp_path):
    import dataclasses

    from export.train import load_extra

    (tmp_path / "extra.csv").write_text("text,target\nWhere is my parcel?,It is on its way.\n", encoding="utf-8")
    looked_up = dataclasses.replace(REGISTRY["qa"], lookup=lambda text, o: {**o, "context": f"entries for {text}"})
    assert load_extra(tmp_path / "extra.csv", looked_up)[0]["options"] == {"context": "entries for Where is my parcel?"}
    (row,) = load_extra(tmp_path / "extra.csv", REGISTRY["translate"])
    assert row["options"] == {"direction": "English → Spanish"}  # the task's default, as the tab starts
    (tmp_path / "bad.jsonl").write_text('{"text": "x", "target": "y", "settings": "{not json"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="not JSON"):
        load_extra(tmp_path / "bad.jsonl", REGISTRY["translate"])


@pytest.mark.parametrize("name", ["sentiment", "summarize", "translate", "generate"])
def test_evaluation_and_card_on_tiny_models(name, tiny_settings, tiny_models_dir, tiny_classifier_export, tmp_path):
    """The held-out evaluation (tuned vs zero-shot base vs baseline) and the model card, on tiny models."""
    from export.card import write_card
    from export.evaluate import evaluate_task
    from runtime import registry

    task = REGISTRY[name]
    if task.kind == "classify":
        rows = [{"text": f"great film number {i}", "label": task.labels[i % 2]} for i in range(30)]
        tuned = registry.ModelVersion("sent-tiny", "classifier", str(tiny_classifier_export.path), tuned=True)
        # the tiny classifier has 3 labels; read the first two as the task's
        tuned.path = str(tiny_classifier_export.path)
    elif name == "translate":
        rows = [{"text": f"hello {i}", "target": f"hola {i}", "options": {"direction": d}}
                for i in range(15) for d in ("English → Spanish", "Spanish → English")]
    elif name == "generate":
        rows = [{"text": f"line {i}", "target": f"a new line {i}",
                 "options": {"style": ("quote", "free", "poem (zh)")[i % 3]}} for i in range(30)]
    else:
        rows = [{"text": f"text {i} " * 5, "target": f"summary {i}", "options": {}} for i in range(30)]
    splits = Splits(rows[:20], rows[20:22], rows[22:])
    base = registry.current(tiny_models_dir, "qa")  # the tiny base LM
    if task.kind != "classify":
        tuned = base
    if task.kind == "classify":
        pytest.importorskip("sklearn")
        m = evaluate_task(REGISTRY["finnews"], Splits([dict(r, label=["negative", "neutral", "positive"][i % 3])
                                                        for i, r in enumerate(rows[:20])], [],
                                                       [dict(r, label="positive") for r in rows[22:]]),
                          tiny_models_dir, tuned, base, tiny_settings, n=8)
        task = REGISTRY["finnews"]
    else:
        m = evaluate_task(task, splits, tiny_models_dir, tuned, base, tiny_settings, n=4)
    assert m["target"] and m["held_out_examples"] > 0 and m["baseline"]["name"]
    facts = {"steps": 1, "config": {"lora_r": 8}, "trainable_params": 10}
    card = write_card(tmp_path, task, splits.card(), facts, m, "tiny")
    text = card.read_text()
    assert "base zero-shot" in text and "Target" in text and (tmp_path / "metrics.json").exists()
    if task.kind == "classify":  # the trivial baseline: the most frequent training label, scored on the test rows
        assert m["majority_class"]["label"] == "negative" and m["majority_class"]["accuracy"] == 0.0
        assert "Majority class (always `negative`" in text
    if name == "generate":  # pooled perplexity plus one per style, the pooled one between them
        tuned_m = m["fine_tuned"]
        per_style = [tuned_m[f"perplexity ({s})"] for s in ("quote", "free", "poem (zh)")]
        assert min(per_style) <= tuned_m["perplexity"] <= max(per_style)
        assert "| perplexity (quote) |" in text
        # the poems it writes for the held-out poem rows are sampled (seeded) and checked for form
        assert tuned_m["poems_sampled"] == sum(r["options"]["style"] == "poem (zh)" for r in rows[22:26])
        assert 0 <= tuned_m["poems_in_form"] <= 1 and "poems in form" in m["target"]


def test_perplexity_counts_the_continuation_only(tiny_models_dir, tiny_settings):
    """A target that repeats the user's line first is scored on what follows it (and the end token) only."""
    from export.evaluate import open_version, target_nll
    from runtime import registry

    backend = open_version(tiny_models_dir, registry.current(tiny_models_dir, "qa"))
    tok, task = backend.model.tokenizer, REGISTRY["generate"]
    echo = {"text": "The sea was calm", "target": "The sea was calm and the sky was grey", "options": {"style": "free"}}
    fresh = {**echo, "text": "Something else"}
    (_, [n_echo], [c_echo]), (_, [n_fresh], [c_fresh]) = (target_nll(task, backend, tiny_settings, [r])
                                                           for r in (echo, fresh))
    assert n_fresh == len(tok(fresh["target"], add_special_tokens=False).input_ids) + 1
    assert n_echo == len(tok(" and the sky was grey", add_special_tokens=False).input_ids) + 1
    # the per-character figure counts the same continuation in characters (+1: the end token)
    assert (c_fresh, c_echo) == (len(fresh["target"]) + 1, len(" and the sky was grey") + 1)


def test_the_card_counts_how_often_the_test_split_was_scored(tmp_path):
    import json

    from export.card import write_card
    from export.pipeline import earlier_test_scores, times_test_scored

    assert times_test_scored(tmp_path, "v1") == 0  # no card yet
    (tmp_path / "metrics.json").write_text(json.dumps({"model_version": "v1", "test_split_scored": 2}))
    assert times_test_scored(tmp_path, "v1") == 2 and times_test_scored(tmp_path, "v2") == 0  # a new version starts again
    metrics = {"held_out_examples": 3, "fine_tuned": {"rougeL": 0.5}, "base_zero_shot": {}, "target": "met: x",
               "baseline": {"name": "lead"}, "test_split_scored": 3}
    card = write_card(tmp_path, REGISTRY["summarize"], Splits([], [], []).card(), {"config": {}}, metrics, "tiny")
    assert "scored 3 time(s) for this version" in card.read_text() and "Earlier versions" not in card.read_text()
    # a new version keeps the count of the versions before it: their test figures may have informed its recipe
    (tmp_path / "metrics.json").write_text(json.dumps({"model_version": "v2", "test_split_scored": 1,
                                                       "test_split_scored_earlier": {"v1": 2}}))
    assert earlier_test_scores(tmp_path, "v2") == {"v1": 2}
    assert earlier_test_scores(tmp_path, "v3") == {"v1": 2, "v2": 1}
    (tmp_path / "metrics.json").write_text(json.dumps({"model_version": "v0", "fine_tuned": {"rougeL": 0.4}}))
    assert earlier_test_scores(tmp_path, "v1") == {"v0": 1}  # a card from before the count: scored at least once
    card = write_card(tmp_path, REGISTRY["summarize"], Splits([], [], []).card(), {"config": {}},
                      {**metrics, "test_split_scored_earlier": {"v1": 2, "v2": 1}}, "tiny")
    assert "Earlier versions scored this task's test split too: v1 2 time(s), v2 1 time(s)" in card.read_text()


def test_looks_at_serving_changes_stay_on_the_versions_card(tmp_path):
    import json

    from export.card import write_card
    from export.pipeline import carried_notes

    note = "a looser retrieval rule: ROUGE-L 0.6 (not served)"
    change = "int8 recipe 3: ROUGE-L 0.5 (before: 0.4)"
    (tmp_path / "metrics.json").write_text(json.dumps({"model_version": "v1", "test_split_scored": 3,
                                                       "test_looks_not_released": [note],
                                                       "serving_changes": [change], "rougeL": 0.5}))
    notes = carried_notes(tmp_path, "v1")
    assert notes == {"test_looks_not_released": [note], "serving_changes": [change]}
    assert carried_notes(tmp_path, "v2") == {}
    metrics = {"held_out_examples": 3, "fine_tuned": {"rougeL": 0.5}, "base_zero_shot": {}, "target": "met: x",
               "baseline": {"name": "lead"}, "test_split_scored": 3, **notes}
    card = write_card(tmp_path, REGISTRY["summarize"], Splits([], [], []).card(), {"config": {}}, metrics, "tiny")
    assert f"scored 3 time(s) for this version (each `python -m export evaluate` adds one). Also scored for a " \
           f"change that was not released: {note} Scored again after a change to how it is served: {change}" \
           in card.read_text()


def test_a_classifier_is_scored_per_language_beside_its_baselines():
    """Sentiment reads English and Chinese: accuracy per language for the model and both baselines, and the
    verdict holds each language to its own target."""
    pytest.importorskip("sklearn")
    from export.evaluate import baseline, majority_class, with_groups

    task = REGISTRY["sentiment"]  # its plan: per language, character n-grams in the baseline
    assert task.evaluation.group_by == "lang" and task.evaluation.char_ngrams
    en = [{"text": t, "label": l, "lang": "English"} for t, l in
          [("great fun", "positive"), ("awful bore", "negative"), ("great cast", "positive"), ("awful plot", "negative")]]
    zh = [{"text": t, "label": l, "lang": "Chinese"} for t, l in
          [("质量很好", "positive"), ("质量很差", "negative"), ("很好很喜欢", "positive"), ("很差不推荐", "negative")]]
    rows = en + zh
    m = with_groups(task, "lang", rows, ["positive"] * 8)
    assert m["accuracy"] == 0.5 and m["English"]["accuracy"] == 0.5 and m["Chinese"]["accuracy"] == 0.5
    name, bl = baseline(task, Splits(rows * 3, [], rows), rows)
    assert "character 1-3 grams" in name and bl["Chinese"]["accuracy"] == 1.0  # no spaces: characters carry it
    assert set(majority_class(task, Splits(rows, [], rows), rows)) >= {"label", "English", "Chinese"}
    v = task.evaluation.verdict({"English": {"accuracy": 0.9}, "Chinese": {"accuracy": 0.85}}, {}, {})
    assert v.startswith("MISSED") and "Chinese 0.85 (missed >= 0.9)" in v and "English 0.9 (met >= 0.87)" in v


def test_chinese_reviews_are_split_apart_from_the_english_ones():
    from tasks.sentiment import build_data
    from tasks.splits import DataMissing

    try:
        splits = build_data(0, chinese=True)
    except DataMissing as e:
        pytest.skip(f"sentiment data not installed: {e}")
    assert build_data(0, chinese=False).test == splits.test[:1500]  # the English-only split is the same rows
    for rows, zh in ((splits.test, 600), (splits.val, 300)):
        assert sum(r["lang"] == "Chinese" for r in rows) == zh
    assert {r["lang"] for r in splits.train} == {"English", "Chinese"}
    train_texts = {r["text"] for r in splits.train}
    assert not any(r["text"] in train_texts for r in splits.test + splits.val)
    assert splits.test[:1500] == [r for r in splits.test if r["lang"] == "English"]  # the English split as before


def test_a_continued_run_goes_on_from_the_adapter_on_rows_it_has_not_drawn(tiny_lm_dir, tmp_path):
    """--continue: the run loads the adapter (its score at step 0 is the first point of the selection), draws the
    training rows after the earlier run's, records the chain for the card, and refuses another training split or base."""
    from export.card import _continued_lines, _reproduce_line
    from export.finetuned import adapter_version
    from export.train import TrainConfig, train

    task = REGISTRY["finnews"]
    rows = [{"text": f"shares {'soar' if i % 2 else 'slump'} {i}", "label": "positive" if i % 2 else "negative"}
            for i in range(44)]
    splits = Splits(rows[:36], rows[36:], [])
    cfg = TrainConfig(max_steps=3, batch_size=4, max_len=32, warmup_steps=1, lr=1e-3, eval_every=3,
                      train_examples=12)
    first = train(task, splits, tiny_lm_dir, tmp_path / "a", cfg)
    (tmp_path / "a" / "data_card.json").write_text(json.dumps(splits.card()))
    assert first["rows_drawn"] == [0, 12] and "continued_from" not in first
    started = adapter_version("finnews", tmp_path / "a")
    go_on = train(task, splits, tiny_lm_dir, tmp_path / "a", cfg, start_from=tmp_path / "a")
    assert go_on["rows_drawn"] == [12, 24] and go_on["examples_used"] == 12
    saved = json.loads((tmp_path / "a" / "adapter_config.json").read_text())["modules_to_save"]
    assert len(saved) == len(set(saved))
    assert go_on["continued_from"] == {"version": started, "facts": json.loads(json.dumps(first))}
    curve = go_on["val_selection"]["curve"]
    assert [s for s, _ in curve] == [0, 3]
    assert curve[0][1] == first["val_selection"]["restored_value"]  # step 0 is the loaded adapter, not a fresh one
    # the adapter changes only when a trained step beat the one it started from
    assert (go_on["val_selection"]["selected_step"] == 0) == (adapter_version("finnews", tmp_path / "a") == started)
    lines = _continued_lines(go_on)
    assert "rows 12..24" in lines[0] and "rows 0..12" in lines[1]
    assert "trained `%s`" % started in _reproduce_line("finnews", go_on)
    assert "--continue --steps 3 --time-budget 2400 --eval-every 3`." in _reproduce_line("finnews", go_on)
    other = Splits(rows[:30], rows[36:], [])
    with pytest.raises(ValueError, match="another training split"):
        train(task, other, tiny_lm_dir, tmp_path / "b", cfg, start_from=tmp_path / "a")
    (tmp_path / "a" / "adapter_meta.json").write_text(json.dumps({"base_sha256": "f" * 64}))
    with pytest.raises(ValueError, match="trained on a different base"):
        train(task, splits, tiny_lm_dir, tmp_path / "b", cfg, start_from=tmp_path / "a")


def test_a_lower_learning_rate_for_a_continued_run_is_kept_and_shown_in_the_reproduce_line():
    """--lr overrides the recipe's peak learning rate (a continued run otherwise warms up to the fresh run's); the
    card's command for that continuation carries it, and the fresh run's command does not."""
    from export.card import _reproduce_line
    from export.train import config_for

    task = REGISTRY["translate"]
    assert config_for(task).lr == task.train.lr
    cfg = config_for(task, lr=5e-5)
    assert cfg.lr == 5e-5 and cfg.max_steps == task.train.max_steps

    root = {"config": {"max_steps": 330, "time_budget_s": 4200.0, "lr": 2e-4}}
    middle = {"config": {"max_steps": 100, "time_budget_s": 1000.0, "lr": 2e-4},
              "continued_from": {"version": "translate-aaaa", "facts": root}}
    last = {"config": {"max_steps": 200, "time_budget_s": 2000.0, "lr": 5e-5},
            "continued_from": {"version": "translate-bbbb", "facts": middle}}
    line = _reproduce_line("translate", last)
    assert "trained `translate-aaaa`" in line
    assert "--continue --steps 100 --time-budget 1000`" in line  # the recipe's rate: no flag
    assert "--continue --steps 200 --time-budget 2000 --lr 5e-05`" in line
