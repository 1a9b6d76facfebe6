"""Continuous batching: one decode loop per LM session; requests join the running batch at the next step.

Every step decodes one token for every active sequence in a single forward pass, whatever task (adapter) each
belongs to: on a LoRA-ready graph each row gets its own adapter's factors (runtime.adapters.stack). A new
request is prefilled on its own, in chunks of `prefill_chunk` tokens between decode steps, so a long prompt
delays the others' streams by one chunk at a time rather than by its whole prefill; then its KV cache joins the
batch (left-padded to the batch's length and masked). Finished, failed and abandoned requests (the reader went
away: a closed browser tab) leave the batch at the next step.

On the in-place graph (SlotDecoder), a greedy answer that copies its prompt (a QA entry) may take several tokens a
pass: a draft looked up in its prompt, checked in one pass, kept while it is what the answer would have been.

Tokens of a sequence do not depend on what else is in the batch (same greedy tokens as decoding it alone; the
tests check it), because every row has its own attention mask, positions, sampling state and random generator.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from runtime.lm import OnnxCausalLM, Sampling, pick_token, repeated_ngram_bans

log = logging.getLogger(__name__)

_DONE = object()


@dataclass
class _Request:
    prompt: list[int]
    sampling: Sampling
    lora: object  # runtime.adapters.LoraFeeds or None
    out: queue.Queue = field(default_factory=queue.Queue)
    abandoned: threading.Event = field(default_factory=threading.Event)
    prefilled: int = 0  # prompt tokens already in `past`
    past: dict | None = None  # this request's KV cache while it is prefilled alone
    history: list[int] = field(default_factory=list)
    generated: list[int] = field(default_factory=list)
    last: int = 0  # the token to feed at the next decode step
    length: int = 0  # tokens in its cache (slot decoding)
    reused: int = 0  # prompt tokens whose cache came from the prefix cache (slot decoding)
    draft_misses: int = 0  # drafts in a row of which no token was taken (prompt lookup) ...
    draft_wait: int = 0  # ... and the steps to wait before the next: 2 ** misses

    def __post_init__(self):
        self.rng = np.random.default_rng(self.sampling.seed)
        self.history = list(self.prompt)


def _host(value):
    return value if isinstance(value, np.ndarray) else value.numpy()  # IO-bound outputs come back as OrtValues


class ContinuousDecoder:
    """Runs the token loop of every generation on `lm`'s session in one thread, batching across requests."""

    def __init__(self, lm: OnnxCausalLM, max_batch: int = 16, prefill_chunk: int = 64):
        self.lm = lm.with_adapter(lm.lora) if lm.takes_adapters else lm  # its own view (its `lora` is per step)
        self.no_adapter = lm.lora  # rank-0 factors of a LoRA-ready graph (None for a plain graph)
        self.max_batch, self.prefill_chunk = max_batch, prefill_chunk
        self._inbox: queue.Queue[_Request] = queue.Queue()
        self._waiting: list[_Request] = []
        self._rows: list[_Request] = []  # active, in batch order
        self._past: dict[str, np.ndarray] = {}
        self._mask = np.zeros((0, 0), np.int64)
        self._pos = np.zeros(0, np.int64)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = self.lm.stop_ids
        self._stacked: tuple[tuple, dict] = ((), {})  # the last batch's stacked adapter factors, reused
        self.steps = 0  # decode steps run (a step serves every active row)
        self.max_rows_seen = 0
        self.rows_decoded = 0  # tokens decoded in batch steps (sum of the batch sizes)
        self.drafted = self.accepted = 0  # prompt-lookup draft tokens checked and taken (SlotDecoder)

    # ---- the caller's side -------------------------------------------------------------------------------
    def stream(self, prompt_ids: Sequence[int], s: Sampling, lora=None) -> Iterator[int]:
        """Yield new token ids until a stop token or the budget, like OnnxCausalLM.stream. Closing the generator
        (the reader went away) takes the request out of the batch at the next step."""
        if not prompt_ids:
            raise ValueError("empty prompt")
        if s.max_new_tokens <= 0:
            return
        req = _Request(list(prompt_ids), s, lora if lora is not None else self.no_adapter)
        self._start()
        self._inbox.put(req)
        try:
            while True:
                item = req.out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            req.abandoned.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="continuous-decoder", daemon=True)
                self._thread.start()

    # ---- the loop ----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Finish what is running, then end the loop (its session is no longer served: let it be freed)."""
        self._inbox.put(None)

    def _loop(self) -> None:
        closing = False
        while True:
            idle = not self._rows and not self._waiting
            if idle and closing:
                return
            try:
                item = self._inbox.get(timeout=None if idle else 0)
                while True:
                    if item is None:
                        closing = True
                    else:
                        self._waiting.append(item)
                    item = self._inbox.get_nowait()
            except queue.Empty:
                pass
            self._drop_abandoned()
            if self._waiting and len(self._rows) < self.max_batch:
                req = self._waiting[0]
                try:
                    self._prefill_step(req)
                except Exception as e:  # noqa: BLE001 - that request gets the error; the batch goes on
                    log.exception("prefill failed")
                    req.out.put(e)
                    if req in self._waiting:
                        self._waiting.remove(req)
                    if req in self._rows:
                        self._remove([self._rows.index(req)])
            if self._rows:
                try:
                    self._decode_step()
                except Exception as e:  # noqa: BLE001 - every request in the batch gets the error
                    log.exception("decode step failed")
                    for r in self._rows:
                        r.out.put(e)
                    self._remove(list(range(len(self._rows))))

    def _drop_abandoned(self) -> None:
        self._waiting = [r for r in self._waiting if not r.abandoned.is_set()]
        gone = [i for i, r in enumerate(self._rows) if r.abandoned.is_set()]
        if gone:
            self._remove(gone)

    def _set_loras(self, loras) -> None:
        """Each row's adapter factors for the next step."""
        from runtime.adapters import LoraFeeds, stack

        if self.lm.takes_adapters:
            last = self._stacked[0]  # the rows' adapters of the last stack (held, so never a reused id)
            if len(last) != len(loras) or any(a is not b for a, b in zip(last, loras)):
                self._stacked = (tuple(loras), stack(loras))  # re-stacked only when the batch's make-up changed
            self.lm.lora = LoraFeeds("this step's rows", self._stacked[1])

    def _forward(self, ids, mask, past, pos, loras):
        self._set_loras(loras)
        logits, new_past = self.lm.forward(ids, mask, past, pos, keep=1)  # only the last is used
        return logits, {k: _host(v) for k, v in new_past.items()}

    def _prefill_step(self, req: _Request) -> None:
        """One chunk of `req`'s prompt (the whole rest when nobody is waiting for tokens)."""
        if req.past is None:
            req.past = self.lm.empty_past(1)
        n = len(req.prompt)
        end = n if not self._rows else min(n, req.prefilled + self.prefill_chunk)
        ids = np.asarray([req.prompt[req.prefilled:end]], np.int64)
        mask = np.ones((1, end), np.int64)
        pos = np.arange(req.prefilled, end, dtype=np.int64)[None, :]
        logits, req.past = self._forward(ids, mask, req.past, pos, [req.lora])
        req.prefilled = end
        if end < n:
            return
        self._waiting.remove(req)
        if self._emit(req, logits[0, -1]):
            self._join(req)

    def _emit(self, req: _Request, logits: np.ndarray) -> bool:
        """Pick and send the next token; False when the request is finished (stop token or budget)."""
        s = req.sampling
        tok = pick_token(logits, s, req.history, req.rng, repeated_ngram_bans(req.generated, s.no_repeat_ngram))
        if tok in self._stop:
            req.out.put(_DONE)
            return False
        req.out.put(tok)
        req.history.append(tok)
        req.generated.append(tok)
        req.last = tok
        if len(req.generated) >= s.max_new_tokens:
            req.out.put(_DONE)
            return False
        return True

    def _join(self, req: _Request) -> None:
        """Append `req` (its prompt in its own KV cache) to the batch: both left-padded to one length."""
        length = len(req.prompt)
        width = max(length, self._mask.shape[1])

        def left_pad(a: np.ndarray, to: int, axis: int) -> np.ndarray:
            if a.shape[axis] == to:
                return a
            pad = [(0, 0)] * a.ndim
            pad[axis] = (to - a.shape[axis], 0)
            return np.pad(a, pad)

        if self._rows:
            self._past = {k: np.concatenate([left_pad(self._past[k], width, 2), left_pad(req.past[k], width, 2)])
                          for k in self._past}
            self._mask = np.concatenate([left_pad(self._mask, width, 1),
                                         left_pad(np.ones((1, length), np.int64), width, 1)])
        else:
            self._past, self._mask = req.past, np.ones((1, length), np.int64)
        self._pos = np.append(self._pos, length)
        req.past = None
        self._rows.append(req)
        self.max_rows_seen = max(self.max_rows_seen, len(self._rows))

    def _remove(self, idx: list[int]) -> None:
        keep = [i for i in range(len(self._rows)) if i not in set(idx)]
        self._rows = [self._rows[i] for i in keep]
        if not keep:
            self._past, self._mask, self._pos = {}, np.zeros((0, 0), np.int64), np.zeros(0, np.int64)
            return
        self._past = {k: v[keep] for k, v in self._past.items()}
        self._mask, self._pos = self._mask[keep], self._pos[keep]
        first_real = int(np.argmax(self._mask.any(0)))  # columns no remaining row attends to: drop them
        if first_real:
            self._past = {k: v[:, :, first_real:] for k, v in self._past.items()}
            self._mask = self._mask[:, first_real:]

    def _decode_step(self) -> None:
        ids = np.asarray([[r.last] for r in self._rows], np.int64)
        mask = np.concatenate([self._mask, np.ones((len(self._rows), 1), np.int64)], axis=1)
        logits, self._past = self._forward(ids, mask, self._past, self._pos[:, None],
                                           [r.lora for r in self._rows])
        self._mask, self._pos = mask, self._pos + 1
        self._after_step(logits)

    def _after_step(self, logits: np.ndarray) -> None:
        """Count the step, send each row its token, and let the finished rows go."""
        self.steps += 1
        self.rows_decoded += len(self._rows)
        if self.steps % 500 == 0:
            log.info("continuous decoder: %d steps, %.1f sequences a step on average, up to %d at once%s",
                     self.steps, self.rows_decoded / self.steps, self.max_rows_seen,
                     f"; prompt lookup: {self.accepted} of {self.drafted} draft tokens taken"
                     if self.drafted else "")
        finished = [i for i, r in enumerate(self._rows) if not self._emit(r, logits[i, -1])]
        if finished:
            self._remove(finished)


@dataclass
class _Prefix:
    lora: object  # the adapter it was computed with (held, so identity comparisons stay valid)
    tokens: list[int]
    kv: dict[str, np.ndarray]  # past name -> [kv_heads, len(tokens), head_dim]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.kv.values())


class PrefixCache:
    """The KV cache of recent prompts' beginnings, per adapter, so a prompt that starts like an earlier one prefills
    only the rest. Every prompt of a tab starts with the same system prompt and instructions (the shared
    beginning measured on the served tokenizer: 21 of ~32 tokens for generate, 29 of ~43 for translate, 92 of
    ~270 for qa), and prefill is most of a short answer's machine time.

    A prompt that reuses nothing is kept whole; when a later prompt shares only its beginning, the entry is cut to
    that shared part (what the next prompts of that tab will share too). Least recently used entries go first
    when the cache would exceed `budget_bytes`. Keys and values are the ones a prefill of the same tokens with the
    same adapter writes: a position's keys and values depend only on the tokens up to it."""

    def __init__(self, budget_bytes: int, min_tokens: int = 16):
        self.budget, self.min_tokens = budget_bytes, min_tokens
        self.entries: list[_Prefix] = []  # most recently used last
        self.hits = self.tokens_reused = 0

    def lookup(self, lora, prompt: Sequence[int]) -> tuple[_Prefix | None, int]:
        """The entry sharing the longest beginning with `prompt` under the same adapter, and that length (at
        most len(prompt) - 1: the last prompt token is always run, for its logits); (None, 0) under min_tokens."""
        best, best_len = None, 0
        for e in self.entries:
            if e.lora is not lora:
                continue
            n = min(len(e.tokens), len(prompt) - 1)
            same = 0
            while same < n and e.tokens[same] == prompt[same]:
                same += 1
            if same > best_len:
                best, best_len = e, same
        if best is None or best_len < self.min_tokens:
            return None, 0
        if best_len < len(best.tokens):  # only the shared beginning is worth keeping
            best.tokens = best.tokens[:best_len]
            best.kv = {k: np.ascontiguousarray(v[:, :best_len]) for k, v in best.kv.items()}
        self.entries.remove(best)
        self.entries.append(best)
        self.hits += 1
        self.tokens_reused += best_len
        return best, best_len

    def add(self, lora, tokens: Sequence[int], kv: dict[str, np.ndarray]) -> None:
        entry = _Prefix(lora, list(tokens), kv)
        if len(tokens) < self.min_tokens or entry.nbytes > self.budget:
            return
        self.entries.append(entry)
        while sum(e.nbytes for e in self.entries) > self.budget:
            self.entries.pop(0)


class SlotDecoder(ContinuousDecoder):
    """Continuous batching on a graph whose KV cache is written in place (runtime.gqa.GqaCausalLM).

    Row i of the batch is slot i of the model's cache buffers; rows stay packed in slots 0..n-1, so a decode
    step runs on a view of the first n slots. A new request is prefilled, chunk by chunk, straight into slot n
    (the next free one) and joins the batch in place, with no copy; when rows leave, the last rows' caches
    move down into the freed slots (a copy only then, only of their real length). A prompt that starts like a
    recent one of the same adapter gets that beginning's cache copied into its slot first (PrefixCache)."""

    def __init__(self, lm, max_batch: int = 16, prefill_chunk: int = 64, prefix_cache_mb: float = 64,
                 lookahead: int = 0):
        super().__init__(lm, min(max_batch, lm.slots), prefill_chunk)
        self.prefixes = PrefixCache(int(prefix_cache_mb * 2**20)) if prefix_cache_mb > 0 else None
        self.lookahead = lookahead  # prompt-lookup draft tokens checked per row and step (0: none)

    def _prefill_step(self, req: _Request) -> None:
        n = len(req.prompt)
        slot = len(self._rows)
        if req.prefilled == 0 and self.prefixes is not None:
            entry, req.reused = self.prefixes.lookup(req.lora, req.prompt)
            if entry is not None:
                self.lm.write_slot(slot, entry.kv, req.reused)
                req.prefilled = req.reused
        end = n if not self._rows else min(n, req.prefilled + self.prefill_chunk)
        self._set_loras([req.lora])
        logits = self.lm.run_slots(slot, np.asarray([req.prompt[req.prefilled:end]], np.int64), [end],
                                   req.sampling.decode_graph)
        req.prefilled = end
        if end < n:
            return
        if self.prefixes is not None and not req.reused:
            self.prefixes.add(req.lora, req.prompt, self.lm.read_slot(slot, n))
        self._waiting.remove(req)
        if self._emit(req, logits[0, -1]):
            req.length = n
            self._rows.append(req)  # its cache is already in slot len(rows)
            self.max_rows_seen = max(self.max_rows_seen, len(self._rows))

    def _remove(self, idx: list[int]) -> None:
        gone = set(idx)
        kept = [r for i, r in enumerate(self._rows) if i not in gone]
        for new, r in enumerate(kept):  # new <= old slot: moving in this order never overwrites a kept cache
            old = self._rows.index(r)
            if old != new:
                self.lm.move_slot(old, new, r.length)
        mid = self._waiting[0] if self._waiting and self._waiting[0].prefilled else None
        if mid is not None and len(kept) != len(self._rows):  # a half-prefilled prompt moves down with them
            self.lm.move_slot(len(self._rows), len(kept), mid.prefilled)
        self._rows = kept

    def _drop_abandoned(self) -> None:
        if self._waiting and self._waiting[0].abandoned.is_set():
            # its half-written slot is simply overwritten by the next prompt
            self._waiting[0].prefilled = self._waiting[0].reused = 0
        super()._drop_abandoned()

    def _decode_step(self) -> None:
        full = [i for i, r in enumerate(self._rows) if r.length + 1 > self.lm.max_len]
        for i in full:  # its cache is full: the answer ends there, as at the token budget; the others go on
            self._rows[i].out.put(_DONE)
        if full:
            self._remove(full)
        if self.lookahead and not self._waiting and len(self._rows) <= LOOKUP_MAX_ROWS:
            self._lookahead()
        if not self._rows:
            return
        rows = self._rows
        self._set_loras([r.lora for r in rows])
        # the decode graph only when every row's task allows it (Sampling.decode_graph): one session a step
        logits = self.lm.run_slots(0, np.asarray([[r.last] for r in rows], np.int64), [r.length + 1 for r in rows],
                                   all(r.sampling.decode_graph for r in rows))
        for r in rows:
            r.length += 1
        self._after_step(logits)


    def _draft(self, r: _Request) -> list[int]:
        """Prompt lookup: where the answer's last LOOKUP_NGRAM tokens (else its last two) occur in the prompt, the
        up to `lookahead` tokens that follow them there; greedy answers only (sampled ones and those under a
        constraint are left alone). An answer that copies its prompt (a QA entry, a name, a placeholder) then
        takes several tokens a pass."""
        s = r.sampling
        if s.temperature > 0 or s.constraint is not None:
            return []
        if r.draft_wait > 0:  # its last drafts were refused: an answer that does not copy is not drafted every step
            r.draft_wait -= 1
            return []
        room = min(self.lookahead, s.max_new_tokens - len(r.generated) - 2, self.lm.max_len - r.length - 2)
        prompt = r.prompt
        for n in (LOOKUP_NGRAM, 2):
            if room <= 0 or len(r.generated) < n:
                continue
            tail = r.generated[-n:]
            for j in range(len(prompt) - n - 1, -1, -1):  # the latest occurrence with tokens after it
                if prompt[j:j + n] == tail:
                    return prompt[j + n:j + n + room]
        return []

    def _lookahead(self) -> None:
        """Each row with a draft feeds its next token and the draft in one pass on its own slot; the draft's tokens
        are taken while they are what the row would have picked anyway (its own sampling rules, in order), plus
        the one after them: the same answer as one token a step, in fewer passes. Its cache past the first
        refused token is left stale (a row reads only up to its length)."""
        done = []
        for i, r in enumerate(self._rows):
            draft = self._draft(r)
            if not draft:
                continue
            self._set_loras([r.lora])
            logits = self.lm.run_slots(i, np.asarray([[r.last, *draft]], np.int64), [r.length + 1 + len(draft)],
                                       r.sampling.decode_graph, keep=len(draft) + 1)[0]
            self.drafted += len(draft)
            r.length += 1  # r.last is in its cache now
            taken = 0
            for j in range(len(draft) + 1):
                if not self._emit(r, logits[j]):
                    done.append(i)
                    break
                if j == len(draft) or r.last != draft[j]:
                    break
                r.length += 1  # draft[j] was the row's own pick: its cache entry, written above, stands
                taken += 1
            self.accepted += taken
            r.draft_misses = 0 if taken else r.draft_misses + 1
            r.draft_wait = 2 ** r.draft_misses if r.draft_misses else 0
        if done:
            self._remove(done)


# Prompt lookup (SlotDecoder._draft): the answer's last 3 tokens, else 2, looked up in its prompt ...
LOOKUP_NGRAM = 3
# ... in steps of at most this many rows, no prompt waiting. Each draft is checked in a pass of its own (~20 ms for 9
# tokens of Qwen 0.5B, against ~7 for a one-row step), which pays at one or two rows; a busy server is bound by
# prefill (one chunk a step) and a longer step serves fewer prompts. 32 users, 5 minutes (BENCHMARKS.md, 2026-12-06):
# with drafts checked at every step QA's p95 fell 11.4 -> 9.1 s, the others' rose (translate 10.2 -> 13.0 s) and
# throughput fell 9.5 -> 8.9 requests/s; with no prompt waiting in the decoder (Gradio queues the rest) alike.
LOOKUP_MAX_ROWS = 2


def decoder_for(lm, max_batch: int = 16, prefill_chunk: int = 64, prefix_cache_mb: float = 64,
                lookahead: int = 0) -> ContinuousDecoder:
    """The batching loop that fits `lm`'s graph: in-place slots (and a prompt-prefix cache, and prompt-lookup
    drafts) for a fused-attention graph, else the concatenating one."""
    if getattr(lm, "in_place", False):
        return SlotDecoder(lm, max_batch, prefill_chunk, prefix_cache_mb, lookahead)
    return ContinuousDecoder(lm, max_batch, prefill_chunk)
