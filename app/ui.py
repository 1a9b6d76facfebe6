"""The Gradio UI: one tab per registered task (built from the registry), feedback under every answer, admin."""
from __future__ import annotations

import html
import inspect
import logging
import os
import threading
import uuid
from datetime import timezone
from pathlib import Path

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
/* Every tab stays in the tab bar (wrapping on narrow screens) instead of hiding behind "⋯", so the open tab
   always shows: Gradio measures the hidden copies of the buttons to decide what overflows; at zero width
   nothing does. */
.tab-wrapper .tab-container.visually-hidden > button {display: none !important}
.tab-wrapper {height: auto !important}
.tab-wrapper .tab-container[role=tablist] {flex-wrap: wrap; height: auto; overflow: visible}
.tab-wrapper .tab-container[role=tablist] > button {height: var(--size-8)}
.my-feedback table {width: 100%; table-layout: fixed; border-collapse: collapse; font-size: 0.9em}
.my-feedback th, .my-feedback td {text-align: left; vertical-align: top; padding: 4px 8px;
  border-bottom: 1px solid var(--border-color-primary); overflow-wrap: anywhere}
.my-feedback col.when {width: 11em} .my-feedback col.tab {width: 9em} .my-feedback col.rating {width: 5.5em}
.my-feedback col.id {width: 17em}
"""
# Uploaded files and exports in Gradio's cache are deleted this long after they were written (seconds).
CACHE_LIFETIME_S = 3600


def launch_options() -> dict:
    """How every server of this app is launched (app.py and the tests): uploads are task resources (the KB
    CSV) of bounded size; security headers on every response. A fresh dict per launch: Gradio edits it."""
    from starlette.middleware import Middleware

    return dict(css=CSS, show_error=True, max_file_size=MAX_UPLOAD_BYTES,
                app_kwargs={"middleware": [Middleware(SecurityHeaders)]},
                # the model cards are served from the adapters folder unless NLPAPP_MODEL_CARD_URL (or a
                # Space) names a page
                allowed_paths=[str(p) for p in sorted(ADAPTERS.glob("*/README.md"))])


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

ADAPTERS = Path(__file__).resolve().parent.parent / "adapters"

# gr.HTML runs this when the table mounts and after every update: times are shown in the browser's own zone.
LOCAL_TIMES_JS = """
const fmt = new Intl.DateTimeFormat(undefined, {day: 'numeric', month: 'short', year: 'numeric',
                                                hour: '2-digit', minute: '2-digit'});
const localise = () => element.querySelectorAll('time[datetime]').forEach((t) => {
  const d = new Date(t.getAttribute('datetime'));
  if (!isNaN(d)) { t.textContent = fmt.format(d); t.title = d.toUTCString(); }
});
localise();
watch('value', localise);
"""


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


def _widget(task: Task, c: Control):
    elem_id = f"{task.name}-{c.name}"
    if c.choices:
        risky = [f"{k} ({v})" for k, v in task.experimental.items() if k in c.choices]
        info = ("⚠️ Experimental: " + "; ".join(risky) + ".") if risky else None
        return gr.Dropdown(choices=list(c.choices), value=c.default, label=c.label, info=info, elem_id=elem_id)
    return gr.Slider(minimum=c.minimum, maximum=c.maximum, value=c.default, step=c.step, label=c.label,
                     elem_id=elem_id)


def _example_label(task: Task, example: tuple) -> str:
    """What an example shows: its text (shortened) and the choices it makes, e.g. the direction."""
    text, *values = example
    text = " ".join(str(text).split())
    if len(text) > 90:
        text = text[:89].rstrip() + "…"
    choices = [str(v) for c, v in zip(task.controls, values) if c.choices]
    return f"{text} ({', '.join(choices)})" if choices else text


def _tokens_by_choice(task: Task) -> tuple[int, int, dict]:
    """(choice control index, max tokens control index, {choice: max tokens of its example}) when a task has both
    controls, e.g. a poem style needs more tokens than a quote; (-1, -1, {}) otherwise."""
    names = [c.name for c in task.controls]
    choice = next((i for i, c in enumerate(task.controls) if c.choices), -1)
    if choice < 0 or "max_new_tokens" not in names:
        return -1, -1, {}
    tokens = names.index("max_new_tokens")
    found: dict = {}
    for ex in task.examples:
        if len(ex) > 1 + max(choice, tokens):
            found.setdefault(ex[1 + choice], ex[1 + tokens])
    return choice, tokens, found


def _notice_md(notices: list[str], info: list[str] = ()) -> str:
    """Warnings (⚠️), then plain information (ℹ️), one paragraph each."""
    # escape: nothing a user typed is ever rendered as HTML (quotes stay as they are: this is text, not an attribute,
    # and API clients read it too)
    esc = lambda n: html.escape(n, quote=False)  # noqa: E731
    return "\n\n".join([f"⚠️ {esc(n)}" for n in notices if n] + [f"ℹ️ {esc(n)}" for n in info if n])


def _utc(t):
    """A stored time in UTC (SQLite hands them back without a zone)."""
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _time_tag(t) -> str:
    """A stored time as a <time> element in UTC (LOCAL_TIMES_JS rewrites it in the browser's zone)."""
    t = _utc(t)
    return f"<time datetime=\"{t.isoformat()}\">{t.strftime('%d %b %Y, %H:%M')} UTC</time>"


def _cell(text) -> str:
    """User text inside the My feedback HTML: escaped, and no template syntax left for gr.HTML to fill in."""
    return html.escape(str(text or "")).replace("$", "&#36;").replace("{", "&#123;").replace("}", "&#125;")


def _user_error(e: Exception, where: str):
    if isinstance(e, USER_ERRORS):
        raise gr.Error(str(e), print_exception=False) from None
    log.exception("unexpected error in %s", where)
    raise gr.Error("Something went wrong. Please try again.", print_exception=False) from None


def _card_url(task_name: str) -> str | None:
    """The model card's address: under NLPAPP_MODEL_CARD_URL, on the Space's repository, or served here."""
    base = os.environ.get("NLPAPP_MODEL_CARD_URL", "").strip().rstrip("/")
    if base:
        return f"{base}/{task_name}/README.md"
    if os.environ.get("SPACE_ID"):
        return f"https://huggingface.co/spaces/{os.environ['SPACE_ID']}/blob/main/adapters/{task_name}/README.md"
    card = ADAPTERS / task_name / "README.md"
    return f"gradio_api/file={card}" if card.exists() else None


def figure_in_words(task: Task, version) -> str:
    """The held-out result of a model version as a sentence (no metric names a user would have to look up):
    the task's own words for its figures (`EvalPlan.in_words`), with the sample size and the verdict."""
    if not version.tuned:
        return "It is the untuned base model with a task prompt; it has not been measured on this task."
    m = version.metrics or {}
    plan = task.evaluation
    if plan is None or plan.in_words is None:
        return "Its measured results are in the model card."
    n = m.get("held_out_examples")
    on = f"On {n:,} examples kept out of training" if n else "On examples kept out of training"
    try:
        said = f"{on} {plan.in_words(m.get('fine_tuned') or {}, m.get('base_zero_shot') or {})}."
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return "Its measured results are in the model card."
    target = str(m.get("target", ""))
    if target.startswith("met"):
        return said + " That meets the quality target set for it."
    if target.startswith("MISSED"):
        return said + " That is below the quality target set for it: treat its answers as drafts."
    return said


class App:
    """Holds the service, the store and the admin token; builds the Blocks."""

    def __init__(self, service: Service, store: FeedbackStore | None = None, admin_token: str = ""):
        self.service, self.store = service, store
        self.admin_token = usable_admin_token(admin_token)  # stripped; "" (admin off) when too short
        self.limits = Limits.from_settings(service.settings)
        self.footers: list = []  # (task, Markdown): filled when the page loads
        self.operator_panels: list = []  # shown only once the admin token has been entered
        self.admin_key = None  # gr.State: the token this browser session unlocked admin with

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
    @staticmethod
    def answer_notes(task: Task, reply) -> list[str]:
        """What the user should know about a finished answer: it was cut, or it used an experimental choice."""
        notes = []
        if getattr(reply, "truncated", False):
            limit = reply.settings.get("max_new_tokens")
            control = next((c for c in task.controls if c.name == "max_new_tokens"), None)
            if control is not None and reply.options.get("max_new_tokens", limit) <= limit < control.maximum:
                notes.append(f"The answer was cut at the max-tokens limit ({limit} tokens); raise "
                             f"'{control.label}' for more.")
            else:
                notes.append(f"The answer was cut at {limit} tokens, the most this server writes for this tab.")
        for value in reply.options.values():
            if isinstance(value, str) and value in task.experimental:
                notes.append(f"{value} is experimental: {task.experimental[value]}.")
        return notes

    @staticmethod
    def answer_info(task: Task, reply) -> list[str]:
        """What a finished answer was based on, where its task can say (Task.answer_source)."""
        return [task.answer_source(reply.options)] if task.answer_source is not None else []

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
                notes = reply.notices + self.answer_notes(task, reply) + [note]
                return reply.probabilities, _notice_md(notes), self.footer(task), answer_id
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
                notes = reply.notices + self.answer_notes(task, reply) + [note]
                yield reply.text, _notice_md(notes, self.answer_info(task, reply)), self.footer(task), answer_id

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
            ack = self.submit(answer_id, request, rating=rating, correction=correction, comment=comment)
        except Exception as e:  # noqa: BLE001
            _user_error(e, "feedback")
        return ("✅ " if ack.stored else "⚠️ ") + html.escape(ack.message)

    def submit(self, answer_id: str, request: gr.Request | None, **given):
        """The one way feedback is stored, from the API and from the page alike: the feedback budget of the
        caller's address first, then the store (which refuses another session's answer)."""
        self.limits.check("feedback", self.address(request))
        return submit_feedback(self.store, self.service.tasks, answer_id, self.session_id(request), **given)

    def page_feedback(self, answer_id: str, request: gr.Request | None, saved: str, **given) -> tuple[str, bool]:
        """Feedback from the page: (acknowledgement, stored). An error comes back as the acknowledgement itself,
        so it replaces whatever the last action said (a raised gr.Error would leave a stale 'saved' beside it)."""
        if self.store is None:
            return "⚠️ Feedback is not enabled on this server.", False
        try:
            ack = self.submit(answer_id, request, **given)
        except USER_ERRORS as e:
            return f"⚠️ {html.escape(str(e))}", False
        except Exception:  # noqa: BLE001
            log.exception("unexpected error in feedback")
            return "⚠️ Something went wrong. Please try again.", False
        return (saved if ack.stored else "⚠️ " + html.escape(ack.message)), True

    # -- layout ----------------------------------------------------------------------------------------
    def build_tab(self, task: Task) -> None:
        with gr.Tab(task.title, id=task.name) as tab:
            gr.Markdown(f"**{task.title}.** {task.description}")
            with gr.Row():
                with gr.Column():
                    text = text_input(label=task.input_label, placeholder=task.placeholder, lines=4,
                                      max_length=MAX_CHARS, elem_id=f"{task.name}-input")
                    controls = [_widget(task, c) for c in task.controls]
                    with gr.Row():
                        clear = gr.Button("Clear", elem_id=f"{task.name}-clear")
                        submit = gr.Button("Submit", variant="primary", elem_id=f"{task.name}-submit")
                    if task.examples:
                        # Labels, not the inputs' own renderings: Gradio 6.17's Examples of a tab that is not open
                        # at page load lose their components' props when the tab opens and render as empty 2x2 px
                        # buttons (a TypeError per example in the console); labelled examples skip that path. A
                        # click still fills every input, the controls included.
                        gr.Examples(examples=[list(e) for e in task.examples], inputs=[text, *controls],
                                    example_labels=[_example_label(task, e) for e in task.examples],
                                    label="Examples (click one, then Submit)")
                with gr.Column():
                    if task.kind == "classify":
                        answer = gr.Label(label="Prediction", num_top_classes=len(task.labels),
                                          elem_id=f"{task.name}-output")
                    else:
                        answer = gr.Textbox(label="Answer", lines=8, interactive=False, elem_id=f"{task.name}-output")
                    notice = gr.Markdown(elem_classes=["notice"], elem_id=f"{task.name}-notice")
                    answer_id = gr.Textbox(visible="hidden", label="answer id", elem_id=f"{task.name}-answer-id")
                    rated = gr.State(None)  # this answer's current rating in this page: 1, -1 or None
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
            if task.upload is not None and self.admin_token:
                self.build_upload(task)
            # A static value, refreshed when the page loads and the tab opens (never a loading spinner)
            footer = gr.Markdown(self.footer(task), elem_classes=["model-footer"], elem_id=f"{task.name}-footer")
            self.footers.append((task, footer))
            tab.select(lambda: self.footer(task), None, footer, show_progress="hidden", queue=False,
                       api_visibility="private")

            choice, tokens, by_choice = _tokens_by_choice(task)
            if by_choice:  # a style chosen by hand brings the max tokens its example uses (a poem needs ~150)
                controls[choice].input(lambda v, n: by_choice.get(v, n), [controls[choice], controls[tokens]],
                                       controls[tokens], show_progress="hidden", queue=False,
                                       api_visibility="private")

            no_rating = gr.update(variant="secondary")
            reset = [ack, up, down, correction, comment, rated]

            def fresh():  # the feedback area of a new (or no) answer
                return "", no_rating, no_rating, None if task.kind == "classify" else "", "", None

            heavy = task.kind == "generate"
            submit.click(lambda: ("", *fresh()), None, [answer_id, *reset], api_visibility="private", queue=False)
            submit.click(self.handler(task), [text, *controls], [answer, notice, footer, answer_id],
                         api_name=task.name, concurrency_id="generate" if heavy else "classify",
                         # generations share decode steps (continuous batching): as many run as one batch holds
                         concurrency_limit=max(1, self.service.settings.max_batch) if heavy else 8)
            clear.click(lambda: ("", None, "", "", *fresh()), None, [text, answer, notice, answer_id, *reset],
                        api_visibility="private", queue=False)

            def rate(rating: int):
                def fn(i, before, request: gr.Request):
                    mark = "👍" if rating == 1 else "👎"
                    replaced = ""
                    if before and before != rating:
                        replaced = f" (replaces your {'👍' if before == 1 else '👎'})"
                    msg, ok = self.page_feedback(i, request, f"{mark} saved{replaced}", rating=rating)
                    if not ok:
                        return msg, gr.update(), gr.update(), before
                    return (msg, gr.update(variant="primary" if rating == 1 else "secondary"),
                            gr.update(variant="primary" if rating == -1 else "secondary"), rating)
                return fn

            def correct(i, c, m, request: gr.Request):
                c = c if isinstance(c, str) and c.strip() else None
                m = m.strip() if isinstance(m, str) and m.strip() else None
                if i and not c and not m:
                    return ("⚠️ Pick the correct label first." if task.kind == "classify"
                            else "⚠️ Write a better answer (or a comment) first.")
                what = "Correction and comment saved" if c and m else "Correction saved" if c else "Comment saved"
                return self.page_feedback(i, request, what, correction=c, comment=m)[0]

            up.click(rate(1), [answer_id, rated], [ack, up, down, rated], api_visibility="private")
            down.click(rate(-1), [answer_id, rated], [ack, up, down, rated], api_visibility="private")
            send.click(correct, [answer_id, correction, comment], [ack], api_visibility="private")

    def build_upload(self, task: Task) -> None:
        """Operator upload: shown once the admin token is entered (Admin tab), checked again on every upload;
        type, size and content are checked before anything changes."""
        with gr.Accordion(task.upload_label, open=False, visible=False, elem_id=f"{task.name}-upload") as panel:
            file = gr.File(label="CSV file", file_types=[".csv"], type="binary")
            go = gr.Button("Replace")
            result = gr.Markdown()

            def replace_resources(key, data, request: gr.Request):
                try:
                    self.check_admin(key, request)
                    if not data:
                        raise TaskInputError("Choose a CSV file first.")
                    return html.escape(task.upload(bytes(data)))
                except Exception as e:  # noqa: BLE001
                    _user_error(e, f"{task.name} upload")

            go.click(replace_resources, [self.admin_key, file], [result], api_visibility="private")
        self.operator_panels.append(panel)

    def _tab_title(self, name: str) -> str:
        """A stored answer's tab as the page names it (the stored name where the tab is gone), escaped."""
        task = self.service.tasks.get(name)
        return _cell(task.title if task else name)

    def feedback_html(self, rows: list[dict]) -> str:
        """A user's feedback as a table that fits the page: tab titles, times in the browser's zone (the <time>
        elements are rewritten by LOCAL_TIMES_JS; without script they read in UTC)."""
        if not rows:
            return "<p>No feedback from this browser session yet: rate or correct an answer in any tab.</p>"
        cut = lambda s: _cell((s or "")[:300])  # noqa: E731
        body = []
        for r in rows:
            gave = "<br>".join(x for x in (
                f"Correction: {cut(r['correction'])}" if r.get("correction") else "",
                f"Comment: {cut(r['comment'])}" if r.get("comment") else "") if x)
            body.append(
                f"<tr><td>{_time_tag(r['created_at'])}</td>"
                f"<td>{self._tab_title(r['answer_task'])}</td><td>{cut(r['answer_input_text'])}</td>"
                f"<td>{cut(r['answer_output'])}</td><td>{ {1: '👍', -1: '👎'}.get(r['rating'], '')}</td>"
                f"<td>{gave}</td></tr>")
        return ("<div class='my-feedback'><table><colgroup><col class='when'><col class='tab'><col><col>"
                "<col class='rating'><col></colgroup><thead><tr><th>When</th><th>Tab</th><th>Your text</th>"
                "<th>Answer</th><th>Rating</th><th>Your correction or comment</th></tr></thead><tbody>"
                + "".join(body) + "</tbody></table></div>")

    # How many answers per tab the follow-up list looks through, and how many it shows
    FOLLOW_UP_SCAN, FOLLOW_UP_SHOWN = 2000, 50

    def follow_up_rows(self) -> list[dict]:
        """The latest answers a person should follow up (Task.follow_up), newest first, across tabs."""
        rows = []
        for name, task in self.service.tasks.items():
            if task.follow_up is not None:
                rows += [r for r in self.store.recent_answers(name, self.FOLLOW_UP_SCAN) if task.follow_up(r["output"])]
        rows.sort(key=lambda r: _utc(r["created_at"]), reverse=True)
        return rows[: self.FOLLOW_UP_SHOWN]

    def follow_up_html(self, rows: list[dict]) -> str:
        if not rows:
            return "<p>No handed-over questions among the latest answers.</p>"
        body = [f"<tr><td>{_time_tag(r['created_at'])}</td><td>{self._tab_title(r['task'])}</td>"
                f"<td>{_cell(r['input_text'][:300])}</td><td>{_cell(r['id'])}</td></tr>" for r in rows]
        return ("<div class='my-feedback'><table><colgroup><col class='when'><col class='tab'><col><col class='id'>"
                "</colgroup><thead><tr><th>When</th><th>Tab</th><th>Question</th><th>Answer id</th></tr></thead>"
                "<tbody>" + "".join(body) + "</tbody></table></div>")

    def build_my_feedback(self) -> None:
        with gr.Tab("My feedback", id="my-feedback") as tab:
            gr.Markdown("The ratings and corrections you gave in this browser session. Nobody else's are shown.")
            table = gr.HTML("", js_on_load=LOCAL_TIMES_JS, elem_id="my-feedback-table")
            show = gr.Button("Refresh", size="sm", elem_id="my-feedback-show")

            def mine(request: gr.Request = None):
                try:
                    rows = self.store.session_feedback(self.session_id(request))
                except Exception as e:  # noqa: BLE001
                    log.exception("reading feedback failed")
                    raise gr.Error("The feedback database is unavailable right now.") from e
                return self.feedback_html(rows)

            tab.select(mine, None, table, show_progress="hidden", api_visibility="private")
            show.click(mine, None, table, api_visibility="private")

    def build_admin(self) -> None:
        """Export and erase: the tab exists only when an admin token is configured, and its tools (and the
        operator panels of the task tabs) appear once this session has entered it. Every action checks it."""
        with gr.Tab("Admin", id="admin"):
            gr.Markdown("Operator tools: export feedback as training data, see the questions handed over to a "
                        "person, erase a session's data, replace the customer-service knowledge base. Enter the admin "
                        "token to unlock them.")
            with gr.Row():
                token = gr.Textbox(label="Admin token", type="password", elem_id="admin-token", scale=4)
                unlock = gr.Button("Unlock", elem_id="admin-unlock", scale=1)
            status = gr.Markdown(elem_id="admin-status")
            with gr.Column(visible=False, elem_id="admin-tools") as tools:
                gr.Markdown("**Export** feedback as training data (SFT, chat SFT, preference pairs, KTO rows, CSV; "
                            "JSONL and Parquet).")
                with gr.Row():
                    tabs = [("All tabs", "")] + [(t.title, n) for n, t in self.service.tasks.items()]
                    task = gr.Dropdown(choices=tabs, value="", label="Tab")
                    version = gr.Textbox(label="Model version (empty: all)")
                    since = gr.Textbox(label="From (ISO date, UTC)", placeholder="2026-11-01")
                    until = gr.Textbox(label="Until (ISO date, UTC)", placeholder="2026-12-01")
                run = gr.Button("Export", variant="primary", elem_id="admin-export")
                done = gr.Markdown()
                file = gr.File(label="Export (zip)", interactive=False)
                with gr.Accordion("Questions handed over to a person", open=False):
                    gr.Markdown(f"The latest {self.FOLLOW_UP_SHOWN} questions the assistant passed to a colleague "
                                "(no help article matched, or it judged that none answered them): someone should "
                                "follow them up, and they show what the knowledge base is missing.")
                    follow_show = gr.Button("Show", size="sm", elem_id="admin-follow-up-show")
                    follow_table = gr.HTML("", js_on_load=LOCAL_TIMES_JS, elem_id="admin-follow-up")
                with gr.Accordion("Erase a session's data", open=False):
                    sid = gr.Textbox(label="Anonymous session id")
                    erase = gr.Button("Erase", variant="stop")
                    erased = gr.Markdown()

            panels = [tools, *self.operator_panels]

            def do_unlock(tok, request: gr.Request):
                try:
                    self.check_admin(tok, request)
                except (AdminRefused, RateLimited) as e:
                    return ("", f"⚠️ {html.escape(str(e))}", *[gr.update(visible=False)] * len(panels))
                return (tok, "Unlocked for this browser session.", *[gr.update(visible=True)] * len(panels))

            for trigger in (unlock.click, token.submit):
                trigger(do_unlock, [token], [self.admin_key, status, *panels], api_visibility="private")

            def do_export(key, t, v, s, u, request: gr.Request):
                try:
                    self.check_admin(key, request)
                    if self.store is None:
                        raise StoreInputError("Feedback is not stored on this server.")
                    path, written = export_zip(self.store, t, s, u, v)
                except Exception as e:  # noqa: BLE001
                    _user_error(e, "admin export")
                rows = written.get("all.csv", 0)
                return (f"Exported {rows} answers with feedback: "
                        + ", ".join(f"{k} ({n})" for k, n in written.items()), str(path))

            def do_erase(key, s, request: gr.Request):
                try:
                    self.check_admin(key, request)
                    if self.store is None:
                        raise StoreInputError("Feedback is not stored on this server.")
                    n = self.store.delete_session((s or "").strip())
                except Exception as e:  # noqa: BLE001
                    _user_error(e, "admin erase")
                return f"Erased {n} answers and their feedback."

            def do_follow_up(key, request: gr.Request):
                try:
                    self.check_admin(key, request)
                    if self.store is None:
                        raise StoreInputError("Feedback is not stored on this server.")
                except Exception as e:  # noqa: BLE001
                    _user_error(e, "admin follow-up list")
                try:
                    rows = self.follow_up_rows()
                except Exception as e:  # noqa: BLE001
                    log.exception("reading the follow-up list failed")
                    raise gr.Error("The feedback database is unavailable right now.") from e
                return self.follow_up_html(rows)

            run.click(do_export, [self.admin_key, task, version, since, until], [done, file], api_visibility="private")
            follow_show.click(do_follow_up, [self.admin_key], [follow_table], api_visibility="private")
            erase.click(do_erase, [self.admin_key, sid], [erased], api_visibility="private")

    def models_md(self) -> str:
        """The 'About the models' page: per tab, what its model is good and bad at, its held-out result in words,
        its model card."""
        parts = ["Each tab is answered by a small GPT (a few hundred million parameters) fine-tuned for its task; "
                 "the base model it was tuned from is named with its version. Small models make mistakes: check "
                 "anything that matters. The results below were measured on examples kept out of training."]
        for name, task in self.service.tasks.items():
            b = self.service.models.peek(name)
            tuned = b is None or b.version.tuned  # the sentences describe the committed fine-tuned models
            lines = [f"**{task.title}.** {(task.about or task.description) if tuned else task.description}"]
            if b is None:
                lines.append("Its model is still loading: this page updates when you open it again.")
            else:
                lines.append(figure_in_words(task, b.version))
            if task.experimental:
                lines.append("Experimental: " + "; ".join(f"{k} ({v})" for k, v in task.experimental.items()) + ".")
            url = _card_url(name)
            extra = [f"[Model card]({url})"] if url else []
            if b is not None:
                base = f", base {Path(b.version.base_model).name}" if b.version.base_model else ""
                extra.append(f"version `{b.version.version}`{base} on "
                             f"{b.placement.provider.replace('ExecutionProvider', '')} ({b.placement.precision})")
            parts.append(" ".join(lines) + ("  \n" + " · ".join(extra) if extra else ""))
        return "\n\n".join(parts)

    def build_about(self):
        with gr.Tab("About the models", id="about") as tab:
            # A static value, refreshed when the page loads and the tab opens (models load after start)
            table = gr.Markdown(self.models_md(), elem_id="about-models")
            reload = gr.Button("Check for new model versions", elem_id="about-reload")
            status = gr.Markdown()

            def refresh():
                try:
                    changed = self.service.models.refresh()
                except Exception as e:  # noqa: BLE001
                    _user_error(e, "refresh")
                titles = [self.service.tasks[n].title if n in self.service.tasks else n for n in changed]
                msg = ("Switched to new versions: " + ", ".join(titles)) if changed else "All tabs are up to date."
                return self.models_md(), msg

            reload.click(refresh, None, [table, status], api_name="refresh_models")
            tab.select(self.models_md, None, table, show_progress="hidden", queue=False, api_visibility="private")
        return table

    def build(self) -> gr.Blocks:
        with gr.Blocks(title="Small-GPT NLP workbench", delete_cache=(CACHE_LIFETIME_S, CACHE_LIFETIME_S)) as demo:
            gr.Markdown("# Small-GPT NLP workbench\nOne tab per task, each answered by a small GPT served with ONNX "
                        "Runtime. Rate and correct any answer: that is how the models improve.")
            if self.admin_token:
                self.admin_key = gr.State("")
            with gr.Tabs():
                for task in self.service.tasks.values():
                    self.build_tab(task)
                about = self.build_about()
                if self.store is not None:
                    self.build_my_feedback()
                if self.admin_token:
                    self.build_admin()
            if self.store is not None:
                gr.api(self.feedback, api_name="feedback")
            # Footers and About were filled when the page was built; models load after start, so fill them
            # again once the page is open, without a loading state on them.
            demo.load(lambda: [self.footer(t) for t, _ in self.footers] + [self.models_md()], None,
                      [f for _, f in self.footers] + [about], show_progress="hidden", queue=False,
                      api_visibility="private")
        return demo


def build_demo(service: Service, store: FeedbackStore | None = None, admin_token: str = "") -> gr.Blocks:
    return App(service, store, admin_token).build()
