"""The shape every task module shares: a Task dataclass, its controls and decoding defaults, input cleaning."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable

from tasks.plans import EvalPlan, TrainConfig

# Text beyond this many characters is cut before tokenizing (a 1 MB paste should not cost a second of CPU).
MAX_CHARS = 20_000
# Largest operator upload (a task's replacement resources, e.g. the QA knowledge-base CSV), in bytes.
MAX_UPLOAD_BYTES = 2_000_000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


class TaskInputError(ValueError):
    """Input the task cannot answer; the message is shown to the user as is."""


class TaskKind(StrEnum):
    """What a task answers with: generated text, or one of its labels with probabilities."""

    GENERATE = "generate"
    CLASSIFY = "classify"


@dataclass(frozen=True)
class Control:
    """One extra input of a task besides its text (a choice or a number), shown as a widget and an API arg."""

    name: str
    label: str
    default: Any
    choices: tuple[str, ...] = ()
    minimum: float = 0.0
    maximum: float = 1.0
    step: float = 0.05

    def clean(self, value: Any) -> Any:
        if value is None:
            return self.default
        if self.choices:
            if value not in self.choices:
                raise TaskInputError(f"{self.label} must be one of: {', '.join(self.choices)}")
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TaskInputError(f"{self.label} must be a number") from None
        if number != number:  # NaN
            raise TaskInputError(f"{self.label} must be a number")
        number = min(max(number, self.minimum), self.maximum)
        return int(number) if isinstance(self.default, int) else number


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.1
    no_repeat_ngram: int = 0  # >0: no n-gram of this size is generated twice
    # One-token steps may run on the fused export's 4-bit decode graph (NLPAPP_DECODE_GRAPH; faster decoding).
    # False where validation showed a loss: the task's rows then keep every step of theirs on int8.
    decode_graph: bool = True


@dataclass(frozen=True)
class Task:
    """A task: what it asks of the user, how it prompts the GPT, how it reads the answer, how it is scored."""

    name: str  # registry key and API name
    title: str  # tab title
    description: str
    kind: TaskKind
    input_label: str
    build_messages: Callable[[str, dict], list[dict]]  # (text, options) -> chat messages
    metric: Callable[[list, list], dict]  # (predictions, references) -> {name: value}
    examples: tuple[tuple, ...] = ()  # (text, *control values)
    controls: tuple[Control, ...] = ()
    decoding: Decoding = Decoding()
    postprocess: Callable[[str], str] = str.strip
    labels: tuple[str, ...] = ()  # classify: class names, in model output order
    placeholder: str = ""
    answer_prefix: str = ""  # text the assistant turn starts with (primes the answer format)
    # Optional step before prompting, e.g. retrieval: (text, options) -> options with what it found added.
    lookup: Callable[[str, dict], dict] | None = None
    # Optional step after the lookup with the tab's GPT at hand (e.g. reordering retrieved entries):
    # (text, options, score) -> options, where score(prompts, continuation) gives the log-probability of the text
    # `continuation` after each prompt (chat messages) under the model that will answer.
    rerank: Callable[[str, dict, Callable[[list[list[dict]], str], list[float]]], dict] | None = None
    # Optional: where a finished answer came from, in words, from its options (e.g. the help article it was given),
    # shown under the answer so whoever reads it can check it at the source.
    answer_source: Callable[[dict], str] | None = None
    # Optional: whether a person should follow up an answer (customer service: it was handed over); the Admin tab
    # lists the latest such answers, so staff see what the assistant could not answer.
    follow_up: Callable[[str], bool] | None = None
    # Optional operator upload that replaces the task's resources (e.g. a knowledge-base CSV): bytes -> message.
    upload: Callable[[bytes], str] | None = None
    upload_label: str = ""
    # Optional per-answer decoding rule: (tokenizer, text, options) -> a runtime.lm.TokenConstraint or None.
    constraint: Callable[[Any, str, dict], Any] | None = None
    # Optional one-off work to do at start, after the model loads (e.g. building a retrieval index).
    warmup: Callable[[], None] | None = None
    # Building the model: the fine-tuning recipe and the held-out evaluation (tasks/plans.py).
    train: TrainConfig = TrainConfig()
    evaluation: EvalPlan | None = None
    # Short everyday inputs for benchmarks and start probes (the load test draws from them).
    sample_inputs: tuple[str, ...] = ()
    # What the fine-tuned model is good and bad at, in plain words (the About tab; from the model card).
    about: str = ""
    # Choices (a direction, a style) whose held-out result is below its bar: choice -> why, with the figure.
    # The UI marks them experimental beside the control and under each answer that used one.
    experimental: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def options(self, values: dict) -> dict:
        """Validated control values, defaults filled in."""
        return {c.name: c.clean(values.get(c.name)) for c in self.controls}


def clean_text(text: Any) -> tuple[str, list[str]]:
    """Normalise user text; returns (text, notices). Raises TaskInputError for nothing usable."""
    notices: list[str] = []
    if text is None:
        text = ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise TaskInputError("Input must be text.")
    if len(text) > MAX_CHARS * 4:  # normalising megabytes is wasted work: cut first
        text = text[: MAX_CHARS * 4]
    text = unicodedata.normalize("NFC", text)
    # Lone surrogates cannot be encoded as UTF-8 and would crash the tokenizer.
    text = text.encode("utf-8", errors="replace").decode("utf-8")
    stripped = _CONTROL.sub("", text)
    if stripped != text:
        notices.append("Control characters were removed from the input.")
    text = stripped.strip()
    if not text:
        raise TaskInputError("Please enter some text.")
    if not any(ch.isalnum() for ch in text):
        raise TaskInputError("The input has no letters or digits to work with.")
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
        notices.append(f"The input was cut to its first {MAX_CHARS:,} characters.")
    return text, notices


def chat(system: str, user: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def classification_metric(predictions: list[str], references: list[str]) -> dict:
    """Accuracy, macro-F1 over the classes that occur, and each class's recall ("recall <label>")."""
    from sklearn.metrics import accuracy_score, f1_score

    out = {"accuracy": float(accuracy_score(references, predictions)),
           "macro_f1": float(f1_score(references, predictions, average="macro", zero_division=0))}
    for label in sorted(set(references)):
        idx = [i for i, r in enumerate(references) if r == label]
        out[f"recall {label}"] = sum(predictions[i] == label for i in idx) / len(idx)
    return out


def rouge_l(predictions: list[str], references: list[str]) -> dict:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
    return {"rougeL": float(sum(scores) / max(len(scores), 1))}


def chrf(predictions: list[str], references: list[str]) -> dict:
    import sacrebleu

    return {"chrF": float(sacrebleu.corpus_chrf(predictions, [references]).score)}
