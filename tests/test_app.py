"""The app started on 127.0.0.1 and called through gradio_client: every task endpoint, feedback, errors."""
import pytest

from tasks import REGISTRY
from tests.conftest import ADMIN_TOKEN


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


def test_admin_panels_exist_only_when_admin_is_configured(service):
    """No admin token: no Admin tab and no knowledge-base upload at all. With one: both exist, hidden until the
    token is entered on the page (tests/test_browser.py unlocks them)."""
    import gradio as gr

    from app.ui import build_demo

    def parts(demo):
        blocks = list(demo.blocks.values())
        return ({b.label for b in blocks if isinstance(b, gr.Tab)},
                {b.elem_id: b.visible for b in blocks if b.elem_id in ("qa-upload", "admin-tools")})

    tabs, hidden = parts(build_demo(service, None, admin_token=""))
    assert "Admin" not in tabs and not hidden
    tabs, hidden = parts(build_demo(service, None, admin_token=ADMIN_TOKEN))
    assert "Admin" in tabs and hidden == {"qa-upload": False, "admin-tools": False}


def test_an_answer_cut_by_max_tokens_says_so(service, monkeypatch):
    from app.ui import App
    from runtime.lm import OnnxCausalLM

    monkeypatch.setattr(OnnxCausalLM, "stop_ids", property(lambda self: set()))  # never stops by itself
    task = REGISTRY["generate"]
    reply = list(service.run("generate", "Once upon a time", style="free", max_new_tokens=8))[-1]
    assert reply.truncated
    assert ("The answer was cut at the max-tokens limit (8 tokens); raise 'Max new tokens' for more."
            in App.answer_notes(task, reply))
    reply = list(service.run("generate", "Once upon a time", style="free", max_new_tokens=400))[-1]
    assert reply.truncated and reply.settings["max_new_tokens"] == 24  # the server's cap, not the control
    assert "The answer was cut at 24 tokens, the most this server writes for this tab." in App.answer_notes(task, reply)
    label = next(service.run("sentiment", "Lovely"))
    assert not label.truncated and not App.answer_notes(REGISTRY["sentiment"], label)


def test_an_experimental_choice_is_marked(service):
    """A choice whose held-out result is below its bar (Task.experimental) is marked under each answer using it."""
    from dataclasses import replace

    from app.ui import App

    task = replace(REGISTRY["translate"], experimental={"Chinese → English": "held-out score 30 of 100, below target"})
    reply = list(service.run("translate", "早上好", direction="Chinese → English"))[-1]
    assert "Chinese → English is experimental: held-out score 30 of 100, below target." in App.answer_notes(task, reply)
    other = list(service.run("translate", "Good morning", direction="English → Spanish"))[-1]
    assert not [n for n in App.answer_notes(task, other) if "experimental" in n]


def test_a_qa_answer_names_the_help_article_it_was_given_below_any_warning(service):
    from app.ui import App, _notice_md
    from tasks import qa

    reply = list(service.run("qa", "Can I pay with PayPal?"))[-1]
    info = App.answer_info(REGISTRY["qa"], reply)
    shown = qa.knowledge_base().by_id[reply.options["sources"][0]]
    assert info == [f"Help article given to the assistant: “{shown.question}” [{shown.id}]"]
    assert not App.answer_info(REGISTRY["summarize"], reply)
    md = _notice_md(["Cut <short> & \"I've\""], info)
    assert md.startswith("⚠️ Cut &lt;short&gt; &amp; \"I've\"\n\nℹ️ Help article") and "<" not in md


def test_the_about_page_names_each_tabs_base_model(service):
    """Each loaded tab's line names the base its version was built on (the page once said SmolLM2 for every tab
    after all of them had moved to Qwen)."""
    from pathlib import Path

    from app.ui import App

    service.backend("qa")  # loaded, so the page describes it
    md = App(service).models_md()
    base = Path(service.models.peek("qa").version.base_model).name
    assert base and f", base {base} on CPU" in md and "SmolLM2-135M-Instruct, 135 million" not in md


def test_the_admin_follow_up_list_shows_handed_over_questions_newest_first(service, store):
    from app.ui import App
    from tasks import qa

    def answer(task, text, output):
        assert store.record_answer(task=task, input_text=text, output=output, model_version="v1",
                                   session_id="s", prompt="", messages=[], settings={}).stored

    answer("qa", "Where is my order NW-118734?", qa.HANDOVER)
    answer("qa", "Can I pay with PayPal?", "Yes, PayPal is accepted.")
    answer("summarize", "text that mentions a human colleague", qa.HANDOVER)  # not a tab with follow-ups
    answer("qa", "<b>$x</b> {y} weather?", qa.HANDOVER)
    app = App(service, store)
    rows = app.follow_up_rows()
    assert [r["input_text"] for r in rows] == ["<b>$x</b> {y} weather?", "Where is my order NW-118734?"]
    page = app.follow_up_html(rows)
    assert "&lt;b&gt;&#36;x&lt;/b&gt; &#123;y&#125; weather?" in page and "<b>" not in page
    assert page.count("<tr>") == 3 and "Customer service" in page and rows[0]["id"] in page
    assert "No handed-over questions" in app.follow_up_html([])


def test_close_sets_the_stop_event_on_the_server_loop_while_pages_are_open():
    """CI once failed in teardown: gradio's close() set the stop event from the test thread while the
    server loop was removing a heartbeat's waiter. close_demo must set it on the loop's own thread."""
    import threading

    import gradio as gr
    import httpx

    from app.ui import close_demo
    from tests.conftest import free_port

    with gr.Blocks() as demo:
        gr.Markdown("x")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    event = demo.app.stop_event
    set_threads = []
    real_set = event.set

    def recording_set():
        if not event.is_set():  # only the call that wakes the waiters iterates over them
            set_threads.append(threading.current_thread())
        real_set()

    event.set = recording_set
    ended = []

    def open_page(i):
        url = f"http://127.0.0.1:{port}/gradio_api/heartbeat/page{i}"
        with httpx.stream("GET", url, timeout=30) as r:
            for _ in r.iter_lines():
                pass
        ended.append(i)

    pages = [threading.Thread(target=open_page, args=(i,), daemon=True) for i in range(6)]
    for p in pages:
        p.start()
    for _ in range(400):  # until every page's stream waits on the event (20 s at most)
        if len(event._waiters or ()) >= 6:
            break
        threading.Event().wait(0.05)
    assert len(event._waiters) >= 6
    close_demo(demo)
    for p in pages:
        p.join(10)
    assert len(set_threads) == 1 and set_threads[0] is not threading.main_thread()
    assert sorted(ended) == list(range(6))  # every open page's stream was ended by the stop
