"""The task service: cleans input, builds prompts, runs the task's model, streams replies. No Gradio here."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from config import Settings
from runtime.lm import OnnxCausalLM, Sampling
from runtime.models import Backend, ModelSet
from serving.prompt import label_token_ids, render_prompt
from tasks import REGISTRY, Task, TaskInputError, TaskKind, clean_text

log = logging.getLogger(__name__)


def answer_complete(raw: str, shown: str) -> bool:
    """True when the task's postprocess cut real text off the raw output (a summary's second line, a
    translation's second paragraph): more tokens cannot change the answer, so decoding can stop."""
    body = raw.strip()
    return bool(shown) and body.startswith(shown) and bool(body[len(shown):].strip())


# inputs that carry no content, for calibrating a zero-shot classifier: their mean label scores are its lean
# (one alone can mislead: on Qwen "N/A" made every headline "positive", validation macro-F1 0.11; the mean of
# the three 0.46, and sentiment accuracy 0.742 against 0.715)
CONTENT_FREE = ("N/A", "", "[MASK]")


class ServiceError(RuntimeError):
    """The model failed; the message is safe to show to a user."""


@dataclass
class Reply:
    task: str
    text: str = ""
    probabilities: dict[str, float] | None = None
    notices: list[str] = field(default_factory=list)
    done: bool = False
    model: str = ""  # what answered: version, provider, precision
    version: str = ""  # the model version alone
    prompt: str = ""  # the exact prompt text sent to the model (stored with feedback)
    messages: list[dict] = field(default_factory=list)  # the chat messages behind the prompt
    input_text: str = ""  # the user's text after cleaning and cutting
    options: dict = field(default_factory=dict)  # the task's control values
    settings: dict = field(default_factory=dict)  # decoding settings actually used
    truncated: bool = False  # generation stopped at max_new_tokens, not at the end of the answer


class Service:
    def __init__(self, models: ModelSet, settings: Settings, tasks: dict[str, Task] | None = None,
                 seed: int | None = None):
        self.models = models
        self.settings = settings
        self.tasks = tasks or REGISTRY
        self.seed = seed  # evaluation samples reproducibly; the app leaves it None (a new draw each answer)

    def task(self, name: str) -> Task:
        if name not in self.tasks:
            raise TaskInputError(f"unknown task {name!r}")
        return self.tasks[name]

    def describe(self, name: str) -> str:
        backend = self.models.peek(name)
        return backend.describe if backend is not None else "model loading…"

    def backend(self, name: str) -> Backend:
        return self.models.get(name)

    def _fit_prompt(self, task: Task, tokenizer, text: str, opts: dict, reply: Reply) -> list[int]:
        """Token ids of the prompt; the user's text is cut (with a notice) to fit the input budget.
        Records the prompt, messages and used text on `reply`."""
        budget = self.settings.max_input_tokens
        messages = task.build_messages(text, opts)
        prompt = render_prompt(tokenizer, messages, task.answer_prefix)
        ids = tokenizer(prompt, add_special_tokens=False).input_ids
        reply.prompt, reply.messages, reply.input_text = prompt, messages, text
        if len(ids) <= budget:
            return ids
        text_ids = tokenizer(text, add_special_tokens=False).input_ids
        keep = max(len(text_ids) - (len(ids) - budget) - 1, 1)
        while True:  # re-tokenizing a cut string can add a token or two: shrink until it fits
            cut = tokenizer.decode(text_ids[:keep], skip_special_tokens=True)
            messages = task.build_messages(cut, opts)
            prompt = render_prompt(tokenizer, messages, task.answer_prefix)
            ids = tokenizer(prompt, add_special_tokens=False).input_ids
            if len(ids) <= budget or keep <= 1:
                break
            keep -= max(1, len(ids) - budget)
        reply.prompt, reply.messages, reply.input_text = prompt, messages, cut
        reply.notices.append(f"Your text is longer than the model's input limit: only its first {keep:,} of "
                             f"{len(text_ids):,} tokens were used.")
        return ids

    def run(self, name: str, text, **controls) -> Iterator[Reply]:
        """Answer `text` with task `name`; yields partial replies (streaming), the last one has done=True.
        Raises TaskInputError for bad input and ServiceError when the model fails."""
        task = self.task(name)
        text, notices = clean_text(text)
        opts = task.options(controls)
        if task.lookup is not None:
            try:
                opts = task.lookup(text, opts)
            except TaskInputError:
                raise
            except Exception as e:
                log.exception("lookup failed for %s", name)
                raise ServiceError(f"The {task.title} lookup failed. Please try again.") from e
        try:
            backend = self.models.get(name)
        except Exception as e:
            log.exception("no model for %s", name)
            raise ServiceError(f"The {task.title} model is not available right now.") from e
        tokenizer = backend.model.tokenizer
        if task.rerank is not None and self.settings.rerank:
            opts = self._rerank(task, backend.model, text, opts)
        if task.kind == TaskKind.CLASSIFY:
            yield self._classify(task, backend, text, opts, notices)
            return
        s = self._sampling(task, opts)
        reply = Reply(task=name, notices=notices, model=backend.describe, version=backend.version.version,
                      options=opts, settings={"temperature": s.temperature, "top_p": s.top_p,
                                              "max_new_tokens": s.max_new_tokens,
                                              "repetition_penalty": s.repetition_penalty})
        ids = self._fit_prompt(task, tokenizer, text, opts, reply)
        if task.constraint is not None:
            s = replace(s, constraint=task.constraint(tokenizer, text, opts))
        new: list[int] = []
        complete = False
        tokens = None
        try:
            tokens = backend.stream(ids, s)
            for tok in tokens:
                new.append(tok)
                partial = tokenizer.decode(new, skip_special_tokens=True)
                if partial.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                    continue
                # Show what the final answer will be (no leading blank lines, only the first line of a
                # summary...), so the streamed text only ever grows into the final one.
                shown = task.postprocess(partial)
                if shown != reply.text:
                    reply.text = shown
                    yield replace(reply)  # a snapshot: callers may keep every partial reply
                if answer_complete(partial, shown):
                    complete = True
                    break  # the postprocess already drops everything after this point: stop decoding
        except Exception as e:
            log.exception("generation failed for %s", name)
            raise ServiceError("The model failed while answering. Please try again.") from e
        finally:
            if hasattr(tokens, "close"):
                tokens.close()  # an answer complete early, or a reader gone: its row leaves the batch now
        # rstrip: a max-tokens stop can fall inside a multi-byte character; the stream never showed that half
        reply.text = task.postprocess(tokenizer.decode(new, skip_special_tokens=True).rstrip("\ufffd"))
        reply.truncated = not complete and len(new) >= s.max_new_tokens
        if not reply.text:
            reply.notices.append("The model returned an empty answer.")
        reply.done = True
        yield reply

    @staticmethod
    def _rerank(task: Task, model: OnnxCausalLM, text: str, opts: dict) -> dict:
        """The task's rerank step, scored by the tab's own model; if it fails the lookup's order stands (logged):
        the answer is still worth giving."""
        tok = model.tokenizer

        def score(prompts: list[list[dict]], continuation: str) -> list[float]:
            cont = tok(continuation, add_special_tokens=False).input_ids
            return [model.continuation_logprob(tok(render_prompt(tok, m), add_special_tokens=False).input_ids, cont)
                    for m in prompts]

        try:
            return task.rerank(text, opts, score)
        except Exception:
            log.exception("rerank failed for %s: the lookup's order is kept", task.name)
            return opts

    def _sampling(self, task: Task, opts: dict) -> Sampling:
        d = task.decoding
        cap = self.settings.max_new_tokens_cap
        return Sampling(max_new_tokens=min(int(opts.get("max_new_tokens", d.max_new_tokens)), cap),
                        temperature=float(opts.get("temperature", d.temperature)),
                        top_p=float(opts.get("top_p", d.top_p)), repetition_penalty=d.repetition_penalty,
                        no_repeat_ngram=d.no_repeat_ngram, seed=self.seed, decode_graph=d.decode_graph)

    @staticmethod
    def _label_scores(task: Task, model: OnnxCausalLM, ids: list[int]) -> dict[str, float]:
        """Log-probability of each label's words as the answer's first token."""
        logp = model.next_token_logprobs(ids)
        scores = {}
        for label, tids in label_token_ids(model.tokenizer, task.labels).items():
            vals = logp[tids]
            scores[label] = float(vals.max() + math.log(np.exp(vals - vals.max()).sum()))
        return scores

    def _label_prior(self, task: Task, model: OnnxCausalLM, opts: dict) -> dict[str, float]:
        """The mean label scores for content-free inputs ("N/A", "", "[MASK]"), subtracted from every input's
        (contextual calibration, Zhao et al. 2021): an untuned model leans to one label word whatever the text
        (SmolLM2 said "negative" to nearly every headline, macro-F1 0.09); this removes the lean, not the signal."""
        cache = vars(model).setdefault("_label_priors", {})
        key = (task.name, tuple(sorted(opts.items())))
        if key not in cache:
            each = []
            for text in CONTENT_FREE:
                messages = task.build_messages(text, opts)
                ids = model.tokenizer(render_prompt(model.tokenizer, messages, task.answer_prefix),
                                      add_special_tokens=False).input_ids
                each.append(self._label_scores(task, model, ids))
            cache[key] = {label: sum(d[label] for d in each) / len(each) for label in task.labels}
        return cache[key]

    def _classify(self, task: Task, backend: Backend, text: str, opts: dict, notices: list[str]) -> Reply:
        model = backend.model
        reply = Reply(task=task.name, notices=notices, model=backend.describe, version=backend.version.version,
                      options=opts, input_text=text, done=True)
        try:
            if isinstance(model, OnnxCausalLM):  # zero-shot: compare the likelihood of the label words
                ids = self._fit_prompt(task, model.tokenizer, text, opts, reply)
                prior = self._label_prior(task, model, opts)
                scores = {k: v - prior[k] for k, v in self._label_scores(task, model, ids).items()}
                top = max(scores.values())
                z = sum(math.exp(v - top) for v in scores.values())
                probs = {k: math.exp(v - top) / z for k, v in scores.items()}
            else:
                n_tokens = model.count_tokens(text)
                if n_tokens > model.max_length:
                    reply.notices.append(f"Only the first {model.max_length} of {n_tokens} tokens were used.")
                reply.prompt = text
                p = model.predict_one(text)
                id2label = backend.labels
                probs = {id2label[i]: float(p[i]) for i in range(len(p))}
        except TaskInputError:
            raise
        except Exception as e:
            log.exception("classification failed for %s", task.name)
            raise ServiceError("The model failed while answering. Please try again.") from e
        reply.probabilities = dict(sorted(probs.items(), key=lambda kv: -kv[1]))
        reply.text = next(iter(reply.probabilities))
        return reply
