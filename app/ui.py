"""The Gradio UI: one tab per registered task (built from the registry), feedback under every answer, admin."""
from __future__ import annotations

import html
import inspect
import logging
import threading
import uuid

import gradio as gr

from app.feedback import AdminRefused, check_admin, record_reply, submit_feedback, usable_admin_token
from app.limits import Limits, RateLimited, client_address
from app.security import SecurityHeaders
from feedback.export import export_zip
from serving.service import Service, ServiceError
from feedback.store import FeedbackStore, StoreInputError
from tasks import Control, Task, TaskInputError
from tasks.base import MAX_CHARS, MAX_UPLOAD_BYTES

log = logging.getLogger(__name__)

CSS = """
footer {visibility: hidden}
.model-footer {font-size: 0.85em; opacity: 0.8}
.notice {color: #9a6700}
"""
# Uploaded files and exports in Gradio's cache are deleted this long after they were written (seconds).
CACHE_LIFETIME_S = 3600


def launch_options() -> dict:
    """How every server of this app is launched (app.py and the tests): uploads are task resources (the KB
    CSV) of bounded size; security headers on every response. A fresh dict per launch: Gradio edits it."""
    from starlette.middleware import Middleware

    return dict(css=CSS, show_error=True, max_file_size=MAX_UPLOAD_BYTES,
                app_kwargs={"middleware": [Middleware(SecurityHeaders)]})


def configure_queue(demo: gr.Blocks, concurrency: int = 2, max_size: int = 64) -> gr.Blocks:
    """One front door: every event goes through the queue (its concurrency limits and size cap); the REST
    routes that would skip it (`/gradio_api/run/<api>`) are closed."""
    return demo.queue(default_concurrency_limit=concurrency, max_size=max_size, api_open=False)


def text_input(**kwargs) -> gr.Textbox:
    """A Textbox that refuses a non-string value from an API caller instead of stringifying it (Gradio's
    own preprocess calls str() on anything). Wrapped on the instance: a subclass would need a frontend."""
    box = gr.Textbox(**kwargs)

    def preprocess(payload):
        if payload is not None and not isinstance(payload, str):
            raise gr.Error(f"{box.label or 'This field'} must be text, not {type(payload).__name__}.",
                           print_exception=False)
        return payload

    box.preprocess = preprocess
    return box
USER_ERRORS = (TaskInputError, ServiceError, StoreInputError, AdminRefused, RateLimited)


def close_demo(demo: gr.Blocks, timeout_s: float = 5.0) -> None:
    """Stop a launched demo without racing its open heartbeat streams.

    Gradio 6's close() sets an asyncio.Event from the calling thread while the server's loop adds and
    removes that event's waiters (one per open page); that raced in CI ("deque mutated during iteration").
    Setting it on the server's own loop first leaves close() nothing to iterate.
    """
    event = getattr(getattr(demo, "app", None), "stop_event", None)
    loop = getattr(event, "_loop", None)  # bound by the first waiter; None means nobody ever waited
    if loop is not None and loop.is_running() and not event.is_set():
        done = threading.Event()

        def set_on_loop():
            event.set()
            done.set()

        loop.call_soon_threadsafe(set_on_loop)
        done.wait(timeout_s)
    demo.close(verbose=False)


def _widget(c: Control):
    if c.choices:
        return gr.Dropdown(choices=list(c.choices), value=c.default, label=c.label)
    return gr.Slider(minimum=c.minimum, maximum=c.maximum, value=c.default, step=c.step, label=c.label)


def _notice_md(notices: list[str]) -> str:
    # escape: nothing a user typed is ever rendered as HTML or Markdown
    return "\n\n".join(f"⚠️ {html.escape(n)}" for n in notices if n)


def _user_error(e: Exception, where: str):
    if isinstance(e, USER_ERRORS):
        raise gr.Error(str(e), print_exception=False) from None
    log.exception("unexpected error in %s", where)
    raise gr.Error("Something went wrong. Please try again.", print_exception=False) from None


class App:
    """Holds the service, the store and the admin token; builds the Blocks."""

    def __init__(self, service: Service, store: FeedbackStore | None = None, admin_token: str = ""):
        self.service, self.store = service, store
        self.admin_token = usable_admin_token(admin_token)  # stripped; "" (admin off) when too short
        self.limits = Limits.from_settings(service.settings)

    def address(self, request: gr.Request | None) -> str:
        """The client's address, for rate limits only (held in memory, never stored)."""
        return client_address(request, self.service.settings.trusted_proxy_hops)

    def session_id(self, request: gr.Request | None) -> str:
        """The anonymous id answers and feedback are stored under: a salted hash of the browser session; a
        caller without a session gets a fresh random one per request, never a shared identity."""
        if self.store is None:
            return ""
        sh = getattr(request, "session_hash", None) if request is not None else None
        return self.store.session_id(sh or "no-session-" + uuid.uuid4().hex)

    def check_admin(self, token, request: gr.Request | None) -> None:
        """The admin token, with an exponential back-off per address after each wrong one."""
        address = self.address(request)
        self.limits.admin_attempt(address)
        try:
            check_admin(self.admin_token, token)
        except AdminRefused:
            self.limits.admin_failed(address)
            raise
        self.limits.admin_succeeded(address)

    def footer(self, task: Task) -> str:
        return f"Runs on: {html.escape(self.service.describe(task.name))}"

    # -- task handlers ---------------------------------------------------------------------------------
    def handler(self, task: Task):
        """The tab's submit function. Its signature names the text and each control (the API shows them), and
        ends with a gr.Request, which Gradio injects there: it gives the session that feedback links to."""
        names = [c.name for c in task.controls]

        def split(args):
            *values, request = args
            return values[0], dict(zip(names, values[1:])), request

        if task.kind == "classify":
            def fn(*args):
                text, controls, request = split(args)
                try:
                    self.limits.check("classify", self.address(request))
                    reply = next(self.service.run(task.name, text, **controls))
                except Exception as e:  # noqa: BLE001
                    _user_error(e, task.name)
                answer_id, note = record_reply(self.store, reply, self.session_id(request))
                return reply.probabilities, _notice_md(reply.notices + [note]), self.footer(task), answer_id
        else:
            def fn(*args):
                text, controls, request = split(args)
                try:
                    self.limits.check("generate", self.address(request))
                    reply = None
                    for reply in self.service.run(task.name, text, **controls):
                        if not reply.done:
                            yield reply.text, _notice_md(reply.notices), self.footer(task), ""
                except Exception as e:  # noqa: BLE001
                    _user_error(e, task.name)
                answer_id, note = record_reply(self.store, reply, self.session_id(request))
                yield reply.text, _notice_md(reply.notices + [note]), self.footer(task), answer_id

        P = inspect.Parameter
        fn.__signature__ = inspect.Signature(
            [P("text", P.POSITIONAL_OR_KEYWORD, annotation=str)]
            + [P(n, P.POSITIONAL_OR_KEYWORD) for n in names]
            + [P("request", P.POSITIONAL_OR_KEYWORD, annotation=gr.Request)])
        fn.__annotations__ = {"text": str, "request": gr.Request}  # Gradio reads type hints from here
        fn.__name__ = task.name
        return fn

    def feedback(self, answer_id: str, rating: int | None = None, correction: str | None = None,
                 comment: str | None = None, request: gr.Request = None) -> str:
        """Rate (1 / -1) and/or correct an answer by the id its endpoint returned. Returns an acknowledgement."""
        if self.store is None:
            raise gr.Error("Feedback is not enabled on this server.")
        try:
            self.limits.check("feedback", self.address(request))
            ack = submit_feedback(self.store, self.service.tasks, answer_id, self.session_id(request),
                                  rating=rating, correction=correction, comment=comment)
        except Exception as e:  # noqa: BLE001
            _user_error(e, "feedback")
        return ("✅ " if ack.stored else "⚠️ ") + html.escape(ack.message)

    # -- layout ----------------------------------------------------------------------------------------
    def build_tab(self, task: Task) -> None:
        with gr.Tab(task.title, id=task.name):
            gr.Markdown(f"**{task.title}.** {task.description}")
            with gr.Row():
                with gr.Column():
                    text = text_input(label=task.input_label, placeholder=task.placeholder, lines=4,
                                      max_length=MAX_CHARS, elem_id=f"{task.name}-input")
                    controls = [_widget(c) for c in task.controls]
                    with gr.Row():
                        clear = gr.Button("Clear")
                        submit = gr.Button("Submit", variant="primary", elem_id=f"{task.name}-submit")
                with gr.Column():
                    if task.kind == "classify":
                        answer = gr.Label(label="Prediction", num_top_classes=len(task.labels),
                                          elem_id=f"{task.name}-output")
                    else:
                        answer = gr.Textbox(label="Answer", lines=8, interactive=False, elem_id=f"{task.name}-output")
                    notice = gr.Markdown(elem_classes=["notice"])
                    answer_id = gr.Textbox(visible=False, label="answer id", elem_id=f"{task.name}-answer-id")
                    with gr.Group(visible=self.store is not None):
                        with gr.Row():
                            up = gr.Button("👍 Good answer", size="sm", elem_id=f"{task.name}-up")
                            down = gr.Button("👎 Bad answer", size="sm", elem_id=f"{task.name}-down")
                        if task.kind == "classify":
                            correction = gr.Dropdown(choices=list(task.labels), value=None, label="Correct label",
                                                     elem_id=f"{task.name}-correction")
                        else:
                            correction = gr.Textbox(label="Suggest a better answer", lines=2,
                                                    elem_id=f"{task.name}-correction")
                        comment = gr.Textbox(label="Comment (optional)", lines=1, elem_id=f"{task.name}-comment")
                        send = gr.Button("Send correction", size="sm", elem_id=f"{task.name}-send")
                        ack = gr.Markdown(elem_id=f"{task.name}-ack")
            if task.upload is not None:
                self.build_upload(task)
            if task.examples:
                gr.Examples(examples=[list(e) for e in task.examples], inputs=[text, *controls],
                            label="Examples (click one, then Submit)")
            footer = gr.Markdown(lambda: self.footer(task), elem_classes=["model-footer"])

            heavy = task.kind == "generate"
            submit.click(lambda: ("", None, ""), None, [ack, correction, comment], api_visibility="private",
                         queue=False)
            submit.click(self.handler(task), [text, *controls], [answer, notice, footer, answer_id],
                         api_name=task.name, concurrency_id="generate" if heavy else "classify",
                         concurrency_limit=2 if heavy else 8)
            clear.click(lambda: ("", None, "", ""), None, [text, answer, notice, answer_id],
                        api_visibility="private", queue=False)
            def rate_up(i, request: gr.Request):
                return self.feedback(i, 1, request=request)

            def rate_down(i, request: gr.Request):
                return self.feedback(i, -1, request=request)

            def correct(i, c, m, request: gr.Request):
                return self.feedback(i, None, c, m, request=request)

            up.click(rate_up, [answer_id], [ack], api_visibility="private")
            down.click(rate_down, [answer_id], [ack], api_visibility="private")
            send.click(correct, [answer_id, correction, comment], [ack], api_visibility="private")

    def build_upload(self, task: Task) -> None:
        """Operator upload (admin token required): type, size and content are checked before anything changes."""
        with gr.Accordion(task.upload_label, open=False):
            token = gr.Textbox(label="Admin token", type="password")
            file = gr.File(label="CSV file", file_types=[".csv"], type="binary")
            go = gr.Button("Replace")
            result = gr.Markdown()

            def replace_resources(tok, data, request: gr.Request):
                try:
                    self.check_admin(tok, request)
                    if not data:
                        raise TaskInputError("Choose a CSV file first.")
                    return html.escape(task.upload(bytes(data)))
                except Exception as e:  # noqa: BLE001
                    _user_error(e, f"{task.name} upload")

            go.click(replace_resources, [token, file], [result], api_visibility="private")

    def build_my_feedback(self) -> None:
        with gr.Tab("My feedback", id="my-feedback"):
            gr.Markdown("The ratings and corrections you gave in this browser session. Nobody else's are shown.")
            show = gr.Button("Show my feedback", elem_id="my-feedback-show")
            table = gr.Dataframe(headers=["time", "task", "input", "answer", "rating", "correction", "comment"],
                                 datatype=["str"] * 7, interactive=False, wrap=True)

            def mine(request: gr.Request = None):
                try:
                    rows = self.store.session_feedback(self.session_id(request))
                except Exception as e:  # noqa: BLE001
                    log.exception("reading feedback failed")
                    raise gr.Error("The feedback database is unavailable right now.") from e
                cut = lambda s: (s or "")[:300]  # noqa: E731
                return [[r["created_at"].isoformat(timespec="seconds"), r["answer_task"], cut(r["answer_input_text"]),
                         cut(r["answer_output"]), {1: "👍", -1: "👎"}.get(r["rating"], ""), cut(r["correction"]),
                         cut(r["comment"])] for r in rows]

            show.click(mine, None, table, api_visibility="private")

    def build_admin(self) -> None:
        with gr.Tab("Admin", id="admin"):
            gr.Markdown("Export feedback as training data (SFT, chat SFT, preference pairs, KTO rows, CSV; "
                        "JSONL and Parquet). Needs the admin token set on the server.")
            token = gr.Textbox(label="Admin token", type="password", elem_id="admin-token")
            with gr.Row():
                task = gr.Dropdown(choices=["", *self.service.tasks], value="", label="Task (empty: all)")
                version = gr.Textbox(label="Model version (empty: all)")
                since = gr.Textbox(label="From (ISO date, UTC)", placeholder="2026-11-01")
                until = gr.Textbox(label="Until (ISO date, UTC)", placeholder="2026-12-01")
            run = gr.Button("Export", variant="primary", elem_id="admin-export")
            status = gr.Markdown()
            file = gr.File(label="Export (zip)", interactive=False)
            with gr.Accordion("Erase a session's data", open=False):
                sid = gr.Textbox(label="Anonymous session id")
                erase = gr.Button("Erase", variant="stop")
                erased = gr.Markdown()

            def do_export(tok, t, v, s, u, request: gr.Request):
                try:
                    self.check_admin(tok, request)
                    path, written = export_zip(self.store, t, s, u, v)
                except Exception as e:  # noqa: BLE001
                    _user_error(e, "admin export")
                rows = written.get("all.csv", 0)
                return (f"Exported {rows} answers with feedback: "
                        + ", ".join(f"{k} ({n})" for k, n in written.items()), str(path))

            def do_erase(tok, s, request: gr.Request):
                try:
                    self.check_admin(tok, request)
                    n = self.store.delete_session((s or "").strip())
                except Exception as e:  # noqa: BLE001
                    _user_error(e, "admin erase")
                return f"Erased {n} answers and their feedback."

            run.click(do_export, [token, task, version, since, until], [status, file], api_visibility="private")
            erase.click(do_erase, [token, sid], [erased], api_visibility="private")

    def models_md(self) -> str:
        """The 'About the models' table: version, tuning, held-out metric and target per task."""
        rows = ["| task | model version | fine-tuned | held-out result | runs on |", "|---|---|---|---|---|"]
        for name, task in self.service.tasks.items():
            b = self.service.models.peek(name)
            if b is None:
                rows.append(f"| {task.title} | loading… (refresh in a moment) | | | |")
                continue
            m = b.version.metrics or {}
            result = html.escape(m.get("target", "not evaluated")) if m else "base model, not evaluated"
            rows.append(f"| {task.title} | `{b.version.version}` | {'yes' if b.version.tuned else 'no (zero-shot)'} | "
                        f"{result} | {b.placement.provider.replace('ExecutionProvider', '')} / {b.placement.precision} |")
        return ("Each tab is served by a GPT (SmolLM2-135M-Instruct) fine-tuned for its task with LoRA, merged and "
                "exported to ONNX. Model cards with data, training and metrics: `adapters/<task>/README.md`.\n\n"
                + "\n".join(rows))

    def build_about(self) -> None:
        with gr.Tab("About the models", id="about"):
            table = gr.Markdown(self.models_md)  # a callable: evaluated on each page load (models load after start)
            reload = gr.Button("Check for new model versions", elem_id="about-reload")
            status = gr.Markdown()

            def refresh():
                try:
                    changed = self.service.models.refresh()
                except Exception as e:  # noqa: BLE001
                    _user_error(e, "refresh")
                msg = ("Switched to new versions: " + ", ".join(changed)) if changed else "All tasks are up to date."
                return self.models_md(), msg

            reload.click(refresh, None, [table, status], api_name="refresh_models")

    def build(self) -> gr.Blocks:
        with gr.Blocks(title="Small-GPT NLP workbench", delete_cache=(CACHE_LIFETIME_S, CACHE_LIFETIME_S)) as demo:
            gr.Markdown("# Small-GPT NLP workbench\nOne tab per task, each answered by a small GPT served with ONNX "
                        "Runtime. Rate and correct any answer: that is how the models improve.")
            with gr.Tabs():
                for task in self.service.tasks.values():
                    self.build_tab(task)
                self.build_about()
                if self.store is not None:
                    self.build_my_feedback()
                    self.build_admin()
            if self.store is not None:
                gr.api(self.feedback, api_name="feedback")
        return demo


def build_demo(service: Service, store: FeedbackStore | None = None, admin_token: str = "") -> gr.Blocks:
    return App(service, store, admin_token).build()
