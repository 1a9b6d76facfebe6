"""Write a task model's card (README.md beside the adapter): base, data, training, held-out metrics."""
from __future__ import annotations

import json
from pathlib import Path

from tasks import TaskKind


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _metric_rows(metrics: dict) -> list[str]:
    rows = []
    tuned, base, bl = metrics["fine_tuned"], metrics["base_zero_shot"], metrics["baseline"]
    keys = [k for k, v in tuned.items() if isinstance(v, (int, float)) and k != "seconds"]
    for k in keys:
        rows.append(f"| {k} | **{_fmt(tuned[k])}** | {_fmt(base.get(k, '—'))} | {_fmt(bl.get(k, '—'))} |")
    for d, v in tuned.items():  # per-direction blocks (translation)
        if isinstance(v, dict) and not d.startswith("example"):
            for k, x in v.items():
                rows.append(f"| {k} ({d}) | **{_fmt(x)}** | {_fmt(base.get(d, {}).get(k, '—'))} | "
                            f"{_fmt(bl.get(d, {}).get(k, '—')) if isinstance(bl.get(d), dict) else '—'} |")
    return rows


def _base_comparison_lines(folder: Path) -> list[str]:
    """Each candidate base's best validation score with this task's recipe (`python -m export compare-bases`)."""
    try:
        cmp = json.loads((folder / "base_comparison.json").read_text())
    except (OSError, ValueError):
        return []
    runs = ", ".join(f"`{b}` {r['metric']} {_fmt(r['best'])}"
                     + "".join(f", {g} {_fmt(v)}" for g, v in (r.get("per_group") or {}).items())
                     + f" ({r['run']})" for b, r in cmp["runs"].items())
    return [f"- **Base chosen on validation** ({next(iter(cmp['runs'].values()))['n']} validation examples): "
            f"{runs}. Chosen: `{cmp['chosen']}`."]


def _val_selection_lines(sel: dict | None) -> list[str]:
    if not sel:
        return []
    groups_at = {step: groups for step, groups in sel.get("group_curve") or []}

    def point(step, v):  # "160: 0.875 (Chinese 0.900, English 0.860)"; runs before group curves: "160: 0.875"
        at_step = ", ".join(f"{g} {x:.3f}" for g, x in groups_at.get(step, {}).items())
        return f"{step}: {v:.3f}" + (f" ({at_step})" if at_step else "")

    curve = ", ".join(point(step, v) for step, v in sel["curve"])
    groups = "".join(f", {g} {v:.3f}" for g, v in (sel.get("per_group") or {}).items())
    cut = f", texts cut at {sel['max_tokens']} tokens" if sel.get("max_tokens") else ""
    return [f"- Step selection on the validation split ({sel['n']} examples{cut}, {sel['metric']}): kept step "
            f"{sel['selected_step']} ({sel['selected_value']:.3f}{groups}; re-scored after restoring: "
            f"{sel['restored_value']:.3f}). Curve: {curve}."]


def _base_file_lines(folder: Path) -> list[str]:
    """The base file the adapter was trained on (adapter_meta.json), by hash: the app serves it on no other."""
    try:
        meta = json.loads((folder / "adapter_meta.json").read_text())
    except (OSError, ValueError):
        return []
    if not meta.get("base_sha256"):
        return []
    return [f"- **Trained on**: `{meta.get('base_file')}`, sha256 `{meta['base_sha256']}` (`adapter_meta.json`). "
            "The app merges this adapter only into a base with that hash; on any other base the task serves the "
            "un-tuned base and says so."]


def _base_line(base_model: str) -> tuple[str, str, str]:
    """(Hub id, title, one card line) of the base a card's adapter was trained on."""
    from export.base_files import find_base

    spec = find_base(base_model)
    if spec is None:
        return base_model, base_model, f"- **Base model**: the local folder `{base_model}` (unverified)."
    return spec.hub_id, spec.title, (
        f"- **Base model**: {spec.title} ({spec.license}), dequantized from `{spec.file}` "
        f"({spec.size:,} bytes, sha256 checked) from {spec.sources[0].describe()} or the Hub "
        f"(`NLPAPP_BASE_MODEL={spec.name}`).")


def _earlier_scores(earlier: dict | None) -> str:
    """The card's sentence on earlier versions' looks at the same test split ("" when there were none)."""
    if not earlier:
        return ""
    return (" Earlier versions scored this task's test split too: "
            + ", ".join(f"{v} {n} time(s)" for v, n in earlier.items())
            + "; a choice made after those figures has looked at it as well.")


def _continued_lines(facts: dict) -> list[str]:
    """A continued run names the adapter it started from and that adapter's own training, back to a fresh one."""
    from export.train import earlier_runs, rows_drawn

    runs = earlier_runs(facts)
    if not runs:
        return []
    first, end = rows_drawn(facts)
    lines = [f"- This run went on from the adapter `{runs[0][0]}` (its weights and score head), on training rows "
             f"{first}..{end} of the seeded drawing order (rows it had not drawn); the figures above are this run's, "
             "and the adapter it started from scored as its step 0."]
    for version, f in runs:
        sel = f.get("val_selection") or {}
        first, end = rows_drawn(f)
        lines.append(f"  - `{version}`: {f.get('steps')} steps at batch {f['config'].get('batch_size')}, lr "
                     f"{f['config'].get('lr')}, rows {first}..{end}, {f.get('seconds')} s on {f.get('device')}"
                     + (f"; validation {sel['metric']} {sel['selected_value']} at step {sel['selected_step']}"
                        if sel else "") + ".")
    return lines


def _reproduce_line(name: str, facts: dict) -> str:
    """The command that trains this adapter; for a continued run, the fresh run at the root and each continuation."""
    from export.train import earlier_runs

    runs = earlier_runs(facts)
    if not runs:
        return f"Reproduce: `python -m export train --task {name}` (add `--scale 10` on a GPU host)."
    # the continued runs, oldest first: this one, and each earlier one except the fresh run at the root
    continued = [f["config"] for _, f in reversed(runs[:-1])] + [facts["config"]]
    root_lr = runs[-1][1]["config"].get("lr")  # the recipe's; a continuation that overrode it says so
    steps = [f"`python -m export train --task {name} --continue --steps {c['max_steps']} --time-budget "
             f"{c['time_budget_s']:.0f}" + (f" --eval-every {c['eval_every']}" if c.get("eval_every") else "")
             + (f" --lr {c['lr']:g}" if c.get("lr") != root_lr else "") + "`"
             for c in continued]
    return (f"Reproduce: `python -m export train --task {name}` trained `{runs[-1][0]}` (the recipe of its commit); "
            "then, in turn, " + "; ".join(steps) + ". Runs stopped by their time budget depend on the machine's speed.")


def write_card(folder: Path, task, data_card: dict, facts: dict, metrics: dict, base_model: str) -> Path:
    folder = Path(folder)
    cfg = facts.get("config", {})
    hub_id, title, base_line = _base_line(base_model)
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {hub_id}",
        f"tags: [{task.name}, lora, onnx]",
        "---",
        f"# {task.title}: LoRA adapter{' + classification head' if task.kind == TaskKind.CLASSIFY else ''} for {title}",
        "",
        f"Task: {task.description}",
        "",
        base_line,
        *_base_file_lines(folder),
        *_base_comparison_lines(folder),
        f"- **Version**: `{metrics.get('model_version', '?')}` (hash of this adapter).",
        f"- **Served as**: {metrics.get('served_as', 'merged into the base, exported to ONNX')} "
        f"({'text-classification' if task.kind == TaskKind.CLASSIFY else 'text-generation-with-past'}), "
        f"checked against PyTorch, {metrics.get('precision', '?')} on {metrics.get('provider', '?')}.",
        "",
        "## Held-out evaluation",
        "",
        f"{metrics['held_out_examples']} held-out test examples, through the serving path (ONNX Runtime, "
        f"{metrics.get('precision')}). Command: `python -m export evaluate --task {task.name}`.",
        "",
        "| metric | fine-tuned | base zero-shot | baseline |",
        "|---|---|---|---|",
        *_metric_rows(metrics),
        "",
        f"Baseline: {metrics['baseline']['name']}."
        + (f" Majority class (always `{metrics['majority_class']['label']}`, the most frequent label in training): "
           f"accuracy {metrics['majority_class']['accuracy']:.3f}, macro-F1 {metrics['majority_class']['macro_f1']:.3f}."
           if metrics.get("majority_class") else "")
        + (" Base zero-shot: the untuned model's likelihood of each label word as the answer, calibrated by "
           "subtracting its mean scores for three content-free inputs (\"N/A\", \"\", \"[MASK]\"), so a lean to "
           "one word is not a constant guess." if task.kind == TaskKind.CLASSIFY else ""),
        "",
        f"**Target**: {metrics['target']}.",
        "",
        *[f"Chosen on validation: {note}\n" for note in metrics.get("chosen_on_validation", [])],
        (f"The test split has been scored {metrics['test_split_scored']} time(s) for this version (each "
         "`python -m export evaluate` adds one)."
         if metrics.get("test_split_scored") else
         "How often the test split was scored for this version was not recorded when this card was written.")
        + _earlier_scores(metrics.get("test_split_scored_earlier"))
        + "".join(f" Also scored for a change that was not released: {note}"
                  for note in metrics.get("test_looks_not_released", []))
        + "".join(f" Scored again after a change to how it is served: {note}"
                  for note in metrics.get("serving_changes", [])),
        "",
        "## Data",
        "",
    ]
    for s in data_card["sources"]:
        lines.append(f"- {s['name']}: {s['count']} examples after dedup; license: {s['license']}."
                     + (f" Labels: {s['labels']}." if s.get("labels") else ""))
    lines += ["", "| split | size | sha256 (16) |", "|---|---|---|"]
    for name, sp in data_card["splits"].items():
        lines.append(f"| {name} | {sp['size']} | `{sp['sha256_16']}` |")
    lines += ["", "Deduplicated before splitting (case/space/punctuation-insensitive), fixed seed 0; a test "
              "checks that no test text appears in training.", "", "## Training", "",
              f"- LoRA r={cfg.get('lora_r')}, alpha={cfg.get('lora_alpha')}, dropout={cfg.get('lora_dropout')} on "
              "q,k,v,o,gate,up,down projections" + (", plus the trained `score` head" if task.kind == TaskKind.CLASSIFY else "")
              + f"; {facts.get('trainable_params', 0):,} trainable parameters, stored in fp16.",
              f"- {facts.get('steps')} steps (of {cfg.get('max_steps')} planned; time budget "
              f"{cfg.get('time_budget_s')} s) at batch {cfg.get('batch_size')}, lr {cfg.get('lr')} (warmup "
              f"{cfg.get('warmup_steps')}, cosine), max length {cfg.get('max_len')} tokens, seed {cfg.get('seed')}"
              + ("; batches grouped by length" if cfg.get("group_by_length") else "")
              + ("; class-balanced loss (weights inverse to class frequency)." if cfg.get("balance_classes") else "."),
              f"- {facts.get('examples_used')} training examples drawn ({facts.get('examples_skipped_too_long', 0)} "
              f"skipped as too long), {facts.get('epochs')} epochs; extra rows from feedback/files: "
              f"{facts.get('extra_rows', 0)}.",
              f"- {facts.get('seconds')} s on {facts.get('device')} ({facts.get('tokens_per_s')} tokens/s"
              + (", bf16 autocast" if facts.get("autocast") == "bf16" else "") + "); loss "
              f"{facts.get('first_loss_avg20')} (first 20 steps) -> {facts.get('final_loss_avg20')} (last 20).",
              *_val_selection_lines(facts.get("val_selection")),
              *_continued_lines(facts),
              "", _reproduce_line(task.name, facts), ""]
    ex = metrics["fine_tuned"].get("examples")
    if ex:
        lines += ["## Sample outputs (first held-out examples)", ""]
        for e in ex[:3]:
            lines += [f"- input: {e['input'][:200]!r}", f"  - reference: {e['reference']!r}",
                      f"  - fine-tuned: {e['output']!r}"]
        base_ex = metrics["base_zero_shot"].get("examples") or []
        for e in base_ex[:3]:
            lines += [f"  - base zero-shot on {e['input'][:60]!r}: {e['output'][:200]!r}"]
        lines.append("")
    path = folder / "README.md"
    path.write_text("\n".join(lines))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False))
    (folder / "data_card.json").write_text(json.dumps(data_card, indent=1, ensure_ascii=False))
    return path
