"""A causal LM served from ONNX with a KV cache: a lean token loop for streaming, sampling and scoring."""
from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np

from runtime.providers import Placement, open_session

log = logging.getLogger(__name__)

_NP_DTYPE = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
# A graph input that limits the lm_head to each row's last k positions, 0 meaning all (export/gqa_graph.py adds it)
KEEP_INPUT = "logits_to_keep"


class TokenConstraint(Protocol):
    """Per-request rule on which tokens may come next (e.g. a poem's form): asked before each pick, told the pick."""

    def allowed(self) -> np.ndarray | None: ...  # bool mask over the vocabulary; None: anything

    def advance(self, token: int) -> None: ...


@dataclass
class Sampling:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram: int = 0  # >0: never generate an n-gram of this size twice (stops loops in small models)
    seed: int | None = None
    constraint: TokenConstraint | None = None  # stateful: one per request
    decode_graph: bool = True  # its one-token steps may run on a 4-bit decode graph where the model has one


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, in float64 (the max taken out first, so nothing overflows)."""
    x = np.asarray(logits, np.float64)
    top = x.max(-1, keepdims=True)
    return x - (np.log(np.exp(x - top).sum(-1, keepdims=True)) + top)


def stop_token_ids(tokenizer) -> set[int]:
    """The ids that end an answer: EOS, and the chat end-of-turn marks where the vocabulary has them."""
    ids = {tokenizer.eos_token_id}
    for t in ("<|im_end|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(t)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return {i for i in ids if i is not None}


def repeated_ngram_bans(generated: Sequence[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already present in `generated`."""
    if n <= 0 or len(generated) < n:
        return []
    prefix = list(generated[len(generated) - n + 1:]) if n > 1 else []
    return [generated[i + n - 1] for i in range(len(generated) - n + 1)
            if list(generated[i:i + n - 1]) == prefix]


def pick_token(logits: np.ndarray, s: Sampling, history: Sequence[int], rng: np.random.Generator,
               banned: Sequence[int] = ()) -> int:
    """The next token: banned ones and those `s.constraint` rules out removed, then greedy or top-p sampling."""
    logits = logits.astype(np.float64, copy=True)
    allowed = s.constraint.allowed() if s.constraint is not None else None
    if allowed is not None:
        logits[~allowed] = -np.inf
    if len(banned):
        kept = logits[np.asarray(banned, dtype=np.int64)].copy()
        logits[np.asarray(banned, dtype=np.int64)] = -np.inf
        if not np.isfinite(logits).any():  # the constraint left only banned tokens: the constraint wins
            logits[np.asarray(banned, dtype=np.int64)] = kept
    tok = _sample(logits, s, history, rng)
    if s.constraint is not None:
        s.constraint.advance(tok)
    return tok


def _sample(logits: np.ndarray, s: Sampling, history: Sequence[int], rng: np.random.Generator) -> int:
    if s.repetition_penalty != 1.0 and len(history):
        seen = np.unique(np.asarray(history, dtype=np.int64))
        vals = logits[seen]
        logits[seen] = np.where(vals > 0, vals / s.repetition_penalty, vals * s.repetition_penalty)
    if s.temperature <= 0:
        return int(np.argmax(logits))
    logits /= s.temperature
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if s.top_p < 1.0:
        order = np.argsort(-probs)
        cum = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cum, s.top_p) + 1)]
        mask = np.zeros_like(probs)
        mask[keep] = probs[keep]
        probs = mask / mask.sum()
    return int(rng.choice(len(probs), p=probs))


class OnnxCausalLM:
    """One ONNX Runtime session of a decoder with past key/values, reused by every request."""

    def __init__(self, onnx_path: Path, tokenizer, precision: str, provider: str = "auto", threads: int = 0,
                 io_binding: bool | None = None):
        self.tokenizer = tokenizer
        self.session, self.placement = open_session(onnx_path, precision, provider, threads)
        # On CUDA the KV cache stays on the device between steps (IO binding) instead of a host round trip
        # per token; only the logits come back. Default: on where the session really got CUDA.
        self.io_binding = self.placement.device == "cuda" if io_binding is None else io_binding
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.keeps_logits = KEEP_INPUT in self.input_names
        past = [i for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]
        self.past_names = [i.name for i in past]
        self.present_names = [n.replace("past_key_values.", "present.") for n in self.past_names]
        self.past_dtype = _NP_DTYPE.get(past[0].type, np.float32) if past else np.float32
        # shape: (batch, kv_heads, seq, head_dim); the static dims come from the graph
        self.kv_heads, self.head_dim = (past[0].shape[1], past[0].shape[3]) if past else (0, 0)
        # A LoRA-ready base graph (export/lora_graph.py) takes an adapter's factors as inputs on every step;
        # without one it gets rank-0 factors and computes the base model.
        from runtime.adapters import lora_inputs, no_adapter

        self.lora = no_adapter(self.session) if lora_inputs(self.session) else None

    @property
    def takes_adapters(self) -> bool:
        return self.lora is not None

    def with_adapter(self, lora) -> "OnnxCausalLM":
        """A view of this model that applies `lora` (runtime.adapters.LoraFeeds) on every step. It shares the
        session, tokenizer and memory of the base: switching adapters per request costs nothing."""
        if self.lora is None:
            raise ValueError("this export has no LoRA inputs: serve a merged export of the adapter instead")
        view = copy.copy(self)
        view.__dict__.pop("_label_priors", None)  # zero-shot priors belong to one adapter
        view.lora = lora
        return view

    @property
    def stop_ids(self) -> set[int]:
        return stop_token_ids(self.tokenizer)

    def empty_past(self, batch: int) -> dict[str, np.ndarray]:
        shape = (batch, self.kv_heads, 0, self.head_dim)
        return {n: np.zeros(shape, dtype=self.past_dtype) for n in self.past_names}

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, past: dict[str, np.ndarray],
                position_ids: np.ndarray, keep: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One pass; logits [batch, positions, vocab] of every position, or of the last `keep` ones where the graph
        takes `logits_to_keep` (export/gqa_graph.py; other graphs return all positions)."""
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, **past}
        if self.lora is not None:
            feeds.update(self.lora.feeds)
        if "position_ids" in self.input_names:
            feeds["position_ids"] = position_ids
        if self.keeps_logits:
            feeds[KEEP_INPUT] = np.array([keep], np.int64)
        if self.io_binding:
            return self._forward_bound(feeds)
        outs = self.session.run(None, feeds)
        named = dict(zip(self.output_names, outs))
        new_past = {p: named[q] for p, q in zip(self.past_names, self.present_names)}
        return named["logits"], new_past

    def _forward_bound(self, feeds: dict) -> tuple[np.ndarray, dict]:
        """One step with IO binding: host arrays in, device-resident OrtValues for the past (from the previous
        step) in; logits to the host, the new past left on the session's device."""
        b = self.session.io_binding()
        for name, value in feeds.items():
            if isinstance(value, np.ndarray):
                b.bind_cpu_input(name, np.ascontiguousarray(value))
            else:
                b.bind_ortvalue_input(name, value)
        b.bind_output("logits", "cpu")
        for q in self.present_names:
            b.bind_output(q, self.placement.device)
        self.session.run_with_iobinding(b)
        outs = b.get_outputs()  # in binding order: logits, then the presents
        return outs[0].numpy(), dict(zip(self.past_names, outs[1:]))

    def stream(self, prompt_ids: Sequence[int], s: Sampling) -> Iterator[int]:
        """Yield new token ids one by one until a stop token or the token budget."""
        if not prompt_ids:
            raise ValueError("empty prompt")
        rng = np.random.default_rng(s.seed)
        stop = self.stop_ids
        ids = np.asarray([list(prompt_ids)], dtype=np.int64)
        total = ids.shape[1]
        attn = np.ones((1, total), dtype=np.int64)
        pos = np.arange(total, dtype=np.int64)[None, :]
        past = self.empty_past(1)
        history = list(prompt_ids)
        generated: list[int] = []
        for _ in range(s.max_new_tokens):
            logits, past = self.forward(ids, attn, past, pos, keep=1)
            tok = pick_token(logits[0, -1], s, history, rng, repeated_ngram_bans(generated, s.no_repeat_ngram))
            if tok in stop:
                return
            yield tok
            history.append(tok)
            generated.append(tok)
            ids = np.asarray([[tok]], dtype=np.int64)
            pos = np.asarray([[total]], dtype=np.int64)
            total += 1
            attn = np.ones((1, total), dtype=np.int64)

    def generate(self, prompt_ids: Sequence[int], s: Sampling) -> list[int]:
        return list(self.stream(prompt_ids, s))

    def generate_batch(self, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                       ignore_stop: bool = False) -> list[list[int]]:
        """Greedy decoding of several prompts at once (left padding): for evaluation and benchmarks.
        `ignore_stop` decodes exactly max_new_tokens (benchmarks)."""
        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        n = len(prompts)
        ids = np.full((n, width), pad, dtype=np.int64)
        attn = np.zeros((n, width), dtype=np.int64)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = p
            attn[i, width - len(p):] = 1
        pos = np.maximum(np.cumsum(attn, -1) - 1, 0)
        past = self.empty_past(n)
        stop = set() if ignore_stop else self.stop_ids
        out: list[list[int]] = [[] for _ in range(n)]
        done = np.zeros(n, dtype=bool)
        for _ in range(max_new_tokens):
            logits, past = self.forward(ids, attn, past, pos, keep=1)
            nxt = logits[:, -1].argmax(-1)
            for i, t in enumerate(nxt):
                if not done[i]:
                    if int(t) in stop:
                        done[i] = True
                    else:
                        out[i].append(int(t))
            if done.all():
                break
            ids = nxt.astype(np.int64)[:, None]
            pos = pos[:, -1:] + 1
            attn = np.concatenate([attn, np.ones((n, 1), np.int64)], axis=1)
        return out

    def next_token_logprobs(self, prompt_ids: Sequence[int]) -> np.ndarray:
        """Log-probabilities of every vocabulary token after the prompt (zero-shot classification)."""
        ids = np.asarray([list(prompt_ids)], dtype=np.int64)
        n = ids.shape[1]
        logits, _ = self.forward(ids, np.ones((1, n), np.int64), self.empty_past(1),
                                 np.arange(n, dtype=np.int64)[None, :], keep=1)
        return log_softmax(logits[0, -1])

    def continuation_logprob(self, prompt_ids: Sequence[int], continuation_ids: Sequence[int]) -> float:
        """log P(continuation | prompt): the sum over its tokens, from one pass that returns only their logits."""
        cont = list(continuation_ids)
        if not cont:
            return 0.0
        ids = np.asarray([list(prompt_ids) + cont], dtype=np.int64)
        n = ids.shape[1]
        logits, _ = self.forward(ids, np.ones((1, n), np.int64), self.empty_past(1),
                                 np.arange(n, dtype=np.int64)[None, :], keep=len(cont) + 1)
        logp = log_softmax(logits[0, -len(cont) - 1:-1])  # graphs without logits_to_keep return all positions
        return float(logp[np.arange(len(cont)), cont].sum())


# Longest text a classifier reads, in tokens (serving, validation during training and benchmarks alike).
CLASSIFIER_MAX_TOKENS = 256


class OnnxClassifier:
    """A sequence-classification ONNX model (GPT + score head): probabilities of every class."""

    def __init__(self, onnx_path: Path, tokenizer, precision: str, provider: str = "auto", threads: int = 0,
                 max_length: int = CLASSIFIER_MAX_TOKENS):
        self.tokenizer = tokenizer
        # No spinning: classifier sessions run batches from their own threads, often at the same moment.
        self.session, self.placement = open_session(onnx_path, precision, provider, threads, spin=False)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.max_length = max_length
        self._batcher = None
        # A fast tokenizer is not thread-safe once padding/truncation are set: a request thread counting
        # tokens while the batcher pads raises "Already borrowed". Every use goes through this lock, kept on
        # the tokenizer itself so that models sharing one tokenizer object share the lock too.
        self._tok_lock = vars(tokenizer).setdefault("_thread_lock", threading.Lock())
        self._batcher_lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        with self._tok_lock:
            return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def predict_one(self, text: str) -> np.ndarray:
        """One text, batched server-side with whatever other requests arrive within a few milliseconds."""
        with self._batcher_lock:  # one batcher (one thread) however many first requests race here
            if self._batcher is None:
                from runtime.batcher import batched_proba

                self._batcher = batched_proba(self)
        return self._batcher(text)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        # Each text tokenized once, then batched by token length: similar lengths pad less (2x by itself), and
        # characters misjudge it (a Chinese character is ~1 token on Qwen and 2-3 on SmolLM2, an English one ~0.25).
        # Right padding with pad id: the exported head finds the last real token by the pad id.
        with self._tok_lock:
            encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        out: list[np.ndarray | None] = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in idx)
            input_ids = np.full((len(idx), width), self.tokenizer.pad_token_id, dtype=np.int64)
            attention_mask = np.zeros((len(idx), width), dtype=np.int64)
            for j, i in enumerate(idx):
                input_ids[j, :len(encoded[i])] = encoded[i]
                attention_mask[j, :len(encoded[i])] = 1
            feeds = {k: v for k, v in (("input_ids", input_ids), ("attention_mask", attention_mask))
                     if k in self.input_names}
            if "position_ids" in self.input_names:
                feeds["position_ids"] = np.maximum(np.cumsum(attention_mask, -1) - 1, 0).astype(np.int64)
            logits = self.session.run(None, feeds)[0].astype(np.float64)
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            for j, i in enumerate(idx):
                out[i] = probs[j]
        return np.stack(out) if out else np.zeros((0, 0))


__all__ = ["OnnxCausalLM", "OnnxClassifier", "Sampling", "Placement", "pick_token"]
