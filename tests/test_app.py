"""The app started on 127.0.0.1 and called through gradio_client, one call per task endpoint."""
import socket

import pytest

from tasks import REGISTRY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(service):
    from gradio_client import Client

    from app.ui import CSS, build_demo

    demo = build_demo(service)
    demo.queue(default_concurrency_limit=2, max_size=64)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=CSS)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def _call(client, name, text):
    task = REGISTRY[name]
    args = [text] + [c.default for c in task.controls]
    return client.predict(*args, api_name=f"/{name}")


@pytest.mark.parametrize("name", [n for n, t in REGISTRY.items() if t.kind == "generate"])
def test_generation_endpoints_answer(client, name):
    answer, notice, footer = _call(client, name, REGISTRY[name].examples[0][0])
    assert isinstance(answer, str)
    assert "Runs on" in footer and "CPU" in footer


@pytest.mark.parametrize("name", [n for n, t in REGISTRY.items() if t.kind == "classify"])
def test_classification_endpoints_answer(client, name):
    label, notice, footer = _call(client, name, REGISTRY[name].examples[0][0])
    assert label["label"] in REGISTRY[name].labels
    assert {c["label"] for c in label["confidences"]} == set(REGISTRY[name].labels)


def test_empty_input_is_a_clean_api_error_and_the_app_stays_up(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="enter some text"):
        _call(client, "qa", "   ")
    label, _, _ = _call(client, "sentiment", "fine")
    assert label["label"]


def test_api_lists_every_task(client):
    info = client.view_api(return_format="dict", print_info=False)
    assert {f"/{n}" for n in REGISTRY} <= set(info["named_endpoints"])
