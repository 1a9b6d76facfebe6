"""The Gradio UI: one tab per registered task, built from the task registry; each tab is also an API endpoint."""
from __future__ import annotations

import html
import logging

import gradio as gr

from app.service import Service, ServiceError
from tasks import Control, Task, TaskInputError

log = logging.getLogger(__name__)

CSS = """
footer {visibility: hidden}
.model-footer {font-size: 0.85em; opacity: 0.8}
.notice {color: #9a6700}
"""


def _widget(c: Control):
    if c.choices:
        return gr.Dropdown(choices=list(c.choices), value=c.default, label=c.label)
    return gr.Slider(minimum=c.minimum, maximum=c.maximum, value=c.default, step=c.step, label=c.label)


def _notice_md(notices: list[str]) -> str:
    # notices are our own sentences, but escape anyway: nothing user-made is ever rendered as HTML
    return "\n".join(f"⚠️ {html.escape(n)}" for n in notices)


def _model_md(service: Service, task: Task) -> str:
    return f"Runs on: {html.escape(service.describe(task.name))}"


def make_handler(service: Service, task: Task):
    names = [c.name for c in task.controls]

    def _errors(e: Exception):
        if isinstance(e, (TaskInputError, ServiceError)):
            raise gr.Error(str(e), print_exception=False) from None
        log.exception("unexpected error in %s", task.name)
        raise gr.Error("Something went wrong while answering. Please try again.", print_exception=False) from None

    if task.kind == "classify":
        def classify(text, *values):
            try:
                reply = next(service.run(task.name, text, **dict(zip(names, values))))
            except Exception as e:  # noqa: BLE001
                _errors(e)
            return reply.probabilities, _notice_md(reply.notices), _model_md(service, task)

        classify.__name__ = task.name
        return classify

    def generate(text, *values):
        try:
            for reply in service.run(task.name, text, **dict(zip(names, values))):
                yield reply.text, _notice_md(reply.notices), _model_md(service, task)
        except Exception as e:  # noqa: BLE001
            _errors(e)

    generate.__name__ = task.name
    return generate


def build_tab(service: Service, task: Task) -> None:
    with gr.Tab(task.title, id=task.name):
        gr.Markdown(f"**{task.title}.** {task.description}")
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label=task.input_label, placeholder=task.placeholder, lines=4,
                                  elem_id=f"{task.name}-input")
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
        if task.examples:
            gr.Examples(examples=[list(e) for e in task.examples], inputs=[text, *controls],
                        label="Examples (click one, then Submit)")
        footer = gr.Markdown(_model_md(service, task), elem_classes=["model-footer"])
        heavy = task.kind == "generate"
        submit.click(make_handler(service, task), [text, *controls], [answer, notice, footer],
                     api_name=task.name, concurrency_id="generate" if heavy else "classify",
                     concurrency_limit=2 if heavy else 4)
        clear.click(lambda: ("", None, ""), None, [text, answer, notice], api_visibility="private")


def build_demo(service: Service) -> gr.Blocks:
    with gr.Blocks(title="Small-GPT NLP workbench") as demo:
        gr.Markdown("# Small-GPT NLP workbench\nSix tasks, each answered by a small GPT served with ONNX Runtime.")
        with gr.Tabs():
            for task in service.tasks.values():
                build_tab(service, task)
    return demo
