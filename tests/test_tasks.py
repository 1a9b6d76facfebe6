"""Each task's prompt, controls, post-processing and metric; the registry's shape; input cleaning."""
import pytest

from tasks import MODULES, REGISTRY, TaskInputError, TaskKind, clean_text
from tasks.base import MAX_CHARS


def test_every_registered_task_has_one_shape():
    assert list(REGISTRY) == [m.TASK.name for m in MODULES] and len(REGISTRY) >= 6
    for name, task in REGISTRY.items():
        assert task.name == name and task.kind in set(TaskKind)
        assert task.examples and task.sample_inputs, name
        plan = task.evaluation  # what training and evaluation read from the task module
        assert plan is not None and plan.size > 0 and plan.scoring in {"predict", "perplexity"}, name
        assert task.train.max_steps > 0 and task.train.max_len > 0, name
        # a group is a control (a direction, a style) or, for a classifier, a field of every row (a language)
        assert not plan.group_by or plan.group_by in {c.name for c in task.controls} or task.kind == "classify", name
        assert task.about and plan.in_words is not None, name  # the About tab's plain words come from here
        for ex in task.examples:
            assert len(ex) == 1 + len(task.controls), name
            task.options(dict(zip([c.name for c in task.controls], ex[1:])))  # examples are valid
        if task.kind == "classify":
            assert len(task.labels) >= 2


@pytest.mark.parametrize("name", list(REGISTRY))
def test_prompt_contains_the_text_and_a_system_turn(name):
    task = REGISTRY[name]
    msgs = task.build_messages("Hello there, unique-marker-42", task.options({}))
    assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"
    assert "unique-marker-42" in msgs[-1]["content"]


def test_translation_direction_changes_the_prompt():
    t = REGISTRY["translate"]
    es = t.build_messages("hi", t.options({"direction": "English → Spanish"}))[0]["content"]
    en = t.build_messages("hola", t.options({"direction": "Spanish → English"}))[0]["content"]
    assert "into Spanish" in es and "into English" in en
    with pytest.raises(TaskInputError):
        t.options({"direction": "Klingon → English"})


def test_generation_controls_are_clamped_and_validated():
    t = REGISTRY["generate"]
    o = t.options({"temperature": 99, "top_p": -1, "max_new_tokens": 10_000})
    assert o["temperature"] == 1.5 and o["top_p"] == 0.05 and o["max_new_tokens"] == 512
    assert isinstance(o["max_new_tokens"], int)
    with pytest.raises(TaskInputError):
        t.options({"temperature": "hot"})
    with pytest.raises(TaskInputError):
        t.options({"temperature": float("nan")})


def test_postprocessing():
    assert REGISTRY["summarize"].postprocess('  "A download tool."\nMore text') == "A download tool."
    assert REGISTRY["translate"].postprocess("Hola.\n\nNote: literal") == "Hola."
    assert REGISTRY["qa"].postprocess("  answer \n") == "answer"


def test_metrics():
    assert REGISTRY["sentiment"].metric(["positive", "negative"], ["positive", "positive"])["accuracy"] == 0.5
    f1 = REGISTRY["finnews"].metric(["neutral"] * 3, ["neutral", "positive", "negative"])["macro_f1"]
    assert 0 < f1 < 1
    recalls = REGISTRY["finnews"].metric(["neutral", "neutral", "negative"], ["neutral", "positive", "negative"])
    assert {k: v for k, v in recalls.items() if k.startswith("recall")} == \
        {"recall negative": 1.0, "recall neutral": 1.0, "recall positive": 0.0}
    from tasks.plans import at_least_with_recall

    verdict = at_least_with_recall("macro_f1", 0.5, 0.7)
    assert verdict({"macro_f1": 0.9, **{k: v for k, v in recalls.items() if k.startswith("recall")}}, {}, {}) \
        .startswith("MISSED")  # a high macro-F1 does not hide a class the model never gets right
    assert verdict({"macro_f1": 0.9, "recall a": 0.8, "recall b": 0.7}, {}, {}).startswith("met")
    assert REGISTRY["summarize"].metric(["a tool to download files"], ["a tool to download files"])["rougeL"] == 1.0
    assert REGISTRY["translate"].metric(["hola mundo"], ["hola mundo"])["chrF"] == 100.0
    assert REGISTRY["generate"].metric([0.0, 0.0], [3, 4])["perplexity"] == 1.0


@pytest.mark.parametrize("bad", [None, "", "   \n\t ", "\x00\x01\x02", "!!! ???"])
def test_clean_text_rejects_empty_or_meaningless(bad):
    with pytest.raises(TaskInputError):
        clean_text(bad)


def test_clean_text_normalises_and_cuts():
    text, notes = clean_text("  caf\u0065\u0301 \x00ok\x07 ")
    assert text == "café ok" and notes
    text, notes = clean_text("a" * (MAX_CHARS * 10))
    assert len(text) == MAX_CHARS and any("cut" in n for n in notes)
    text, _ = clean_text("bad surrogate \ud800 here")
    text.encode("utf-8")
    assert clean_text("مرحبا 你好 😀 <b>x</b>")[0] == "مرحبا 你好 😀 <b>x</b>"


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_task_module_reproduces_its_committed_card(name):
    """The recipe and target that moved into the task modules are the ones the committed adapters were built and
    judged with: the same training config, the same held-out size, the same verdict from the stored metrics."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "adapters" / name
    if not (folder / "metrics.json").exists():
        pytest.skip(f"no committed adapter for {name}")
    task = REGISTRY[name]
    metrics = json.loads((folder / "metrics.json").read_text())
    facts = json.loads((folder / "train_facts.json").read_text())
    declared = asdict(task.train)
    # a continued run (export train --continue) may override what the command line can: steps, budget, scoring
    # interval, learning rate; the fresh run at the root of the chain used the declared recipe as it is
    from export.train import earlier_runs

    overridable = {"max_steps", "time_budget_s", "eval_every", "lr"}
    chain = [facts["config"]] + [f["config"] for _, f in earlier_runs(facts)]
    for i, used in enumerate(chain):
        shared = declared.keys() & used.keys() - (overridable if i < len(chain) - 1 else set())
        # fields added or dropped since a run do not count
        assert {k: declared[k] for k in shared} == {k: used[k] for k in shared} and len(shared) >= 10
    assert metrics["held_out_examples"] == task.evaluation.size
    from export.base_files import BASES

    # the base the task module names is the one the adapter was trained on (adapter_meta.json)
    assert json.loads((folder / "adapter_meta.json").read_text())["base_sha256"] == BASES[task.train.base].sha256
    assert task.evaluation.verdict(metrics["fine_tuned"], metrics["base_zero_shot"], metrics["baseline"]) == \
        metrics["target"]


def test_poem_form_counts_lines_between_punctuation():
    from tasks.generation import in_form, poem_form_scores

    jueju = "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
    assert in_form(jueju) and in_form(jueju + "\n" + jueju)  # 4 and 8 lines of 5
    assert not in_form("床前明月光，疑是地上霜。\n举头望明月，低头思故。")  # a short line
    assert not in_form("Here is one: " + jueju)  # chatter around the poem
    assert not in_form("床前明月光，疑是地上霜。")  # two lines
    rows = [{"options": {"style": "poem (zh)"}}, {"options": {"style": "poem (zh)"}},
            {"options": {"style": "poem (zh, free form)"}}]
    scores = poem_form_scores(rows, [jueju, "no", jueju])
    assert scores["poems_in_form"] == 0.5 and scores["poems_in_form_free"] == 1.0 and scores["poems_sampled"] == 2
