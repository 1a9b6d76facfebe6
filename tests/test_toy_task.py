"""A seventh task is one file: registering tests/toy_task.py makes it a tab, an API endpoint, a training
config, an evaluation and a benchmark input, with no other file changed."""
import random

import pytest

import tasks
from tests import toy_task


@pytest.fixture
def toy(tiny_models_dir):
    from runtime import registry

    task = tasks.register(toy_task)
    base = registry.current(tiny_models_dir, "qa")  # the tiny base LM serves the toy task too
    registry.register(tiny_models_dir, task.name, base)
    yield task
    tasks.unregister(task.name)


def test_a_registered_task_module_is_a_tab_and_an_api_endpoint(toy, service, tmp_path):
    from gradio_client import Client

    from app.ui import build_demo, close_demo
    from feedback.store import FeedbackStore
    from tests.conftest import launch_app

    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.sqlite3'}", tmp_path / "spool.jsonl", salt="t")
    store.migrate()
    demo = build_demo(service, store)
    tab_labels = {b.get("props", {}).get("label") for b in demo.config["components"]}
    assert "Shouting" in tab_labels
    server = launch_app(service, store)
    try:
        client = Client(server.url, verbose=False)
        assert "/shout" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        answer, notice, footer, answer_id = client.predict("hello", "Oi", api_name="/shout")
        assert isinstance(answer, str) and "base-tiny" in footer
        row = store.answer(answer_id)
        assert row["task"] == "shout" and "Oi: hello" in row["messages"][-1]["content"]
    finally:
        close_demo(server.demo)
        store.engine.dispose()


def test_a_registered_task_trains_with_its_own_config(toy, tiny_lm_dir, tmp_path):
    from export.train import config_for, train

    cfg = config_for(toy)
    assert cfg == toy_task.TASK.train
    facts = train(toy, tasks.build_data("shout"), tiny_lm_dir, tmp_path / "adapter", cfg)
    assert facts["steps"] == toy_task.TASK.train.max_steps and facts["config"]["max_len"] == 64
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()


def test_a_registered_task_is_evaluated_by_its_plan(toy, tiny_models_dir, tiny_settings):
    from export.evaluate import eval_rows, evaluate_task
    from runtime import registry

    splits = tasks.build_data("shout")
    assert eval_rows(toy, splits) == splits.test[:4]
    base = registry.current(tiny_models_dir, "shout")
    m = evaluate_task(toy, splits, tiny_models_dir, base, base, tiny_settings)
    assert m["held_out_examples"] == 4 and m["baseline"]["name"] == "copy the input"
    assert "exact" in m["fine_tuned"] and m["target"].startswith(("met", "MISSED")) and "exact" in m["target"]


def test_a_registered_task_is_a_benchmark_input(toy):
    from bench.load import request_args

    args = request_args(tasks.REGISTRY["shout"], random.Random(0))
    assert args[0] in toy_task.TASK.sample_inputs and args[1:] == ["Hey"]
