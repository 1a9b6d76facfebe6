"""The app started on 127.0.0.1 and called through gradio_client: every task endpoint, feedback, errors."""
import pytest

from tasks import REGISTRY


@pytest.fixture(scope="module")
def app_store(app_server):
    return app_server.store


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


def _call(client, name, text):
    task = REGISTRY[name]
    args = [text] + [c.default for c in task.controls]
    return client.predict(*args, api_name=f"/{name}")


@pytest.mark.parametrize("name", [n for n, t in REGISTRY.items() if t.kind == "generate"])
def test_generation_endpoints_answer_and_record(client, app_store, name):
    answer, notice, footer, answer_id = _call(client, name, REGISTRY[name].examples[0][0])
    assert isinstance(answer, str)
    assert "Runs on" in footer and "CPU" in footer
    row = app_store.answer(answer_id)
    assert row["task"] == name and row["output"] == answer and row["model_version"] == "base-tiny"
    assert row["messages"][-1]["content"].find(REGISTRY[name].examples[0][0][:10]) >= 0


@pytest.mark.parametrize("name", [n for n, t in REGISTRY.items() if t.kind == "classify"])
def test_classification_endpoints_answer(client, app_store, name):
    label, notice, footer, answer_id = _call(client, name, REGISTRY[name].examples[0][0])
    assert label["label"] in REGISTRY[name].labels
    assert {c["label"] for c in label["confidences"]} == set(REGISTRY[name].labels)
    assert app_store.answer(answer_id)["output"] == label["label"]


def test_feedback_api_rates_and_corrects_the_exact_answer(client, app_store):
    *_, answer_id = _call(client, "qa", "Where is my parcel?")
    assert "saved" in client.predict(answer_id, 1, None, None, api_name="/feedback")
    assert "saved" in client.predict(answer_id, None, "It left the warehouse today.", "too vague",
                                     api_name="/feedback")
    row = {r["id"]: r for r in app_store.export_rows()}[answer_id]
    assert row["rating"] == 1 and row["correction"] == "It left the warehouse today." and row["comment"] == "too vague"
    fb = app_store.session_feedback(row["session_id"])
    assert {r["answer_id"] for r in fb} == {answer_id}  # this client's session sees only its own rows


def test_classifier_correction_must_be_a_label(client):
    from gradio_client.exceptions import AppError

    *_, answer_id = _call(client, "sentiment", "meh")
    with pytest.raises(AppError, match="one of"):
        client.predict(answer_id, None, "maybe", None, api_name="/feedback")
    assert "saved" in client.predict(answer_id, -1, "negative", None, api_name="/feedback")


def test_empty_input_is_a_clean_api_error_and_the_app_stays_up(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="enter some text"):
        _call(client, "qa", "   ")
    with pytest.raises(AppError, match="no answer"):
        client.predict("", 1, None, None, api_name="/feedback")
    label, *_ = _call(client, "sentiment", "fine")
    assert label["label"]


def test_api_lists_every_task_and_feedback(client):
    info = client.view_api(return_format="dict", print_info=False)
    assert {f"/{n}" for n in REGISTRY} | {"/feedback"} <= set(info["named_endpoints"])
