"""A causal LM on a fused-attention graph (GroupQueryAttention, built by onnxruntime-genai's model builder) whose
KV cache is written in place.

Every layer's keys and values live in one preallocated buffer, [slots, kv_heads, max_len, head_dim]: slot i
holds the i-th running sequence, from position 0 (right padding). A step binds the first n slots as both the
past input and the present output (IO binding), and GroupQueryAttention writes each row's new keys and values at
that row's own length (the attention mask's row sum) and rotates positions itself: a decode step copies no
cache, where the optimum graph concatenates the whole cache and expands grouped K/V heads every step.
Buffers are np.zeros: the OS maps pages when they are first written, so an idle slot costs no memory.

Plain `forward` (a past passed in, a present returned) works too, for scoring and single streams, as long as
rows are not left-padded: this attention finds a row's length from its mask, not from position ids.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from runtime.lm import KEEP_INPUT, OnnxCausalLM

log = logging.getLogger(__name__)


# A precision's companion graph for one-token steps, in the folder beside it (export/gqa_graph.py builds
# "int8-decode": more of its weights 4-bit, so a decode step reads fewer bytes; prefill is faster on int8)
DECODE_SUFFIX = "-decode"
# ... for steps of at most this many rows. Measured (run_slots, 64-80 positions, tok/s decode graph vs int8): batch 1
# 63.0 vs 48.8, 2: 115.6 vs 87.7, 4: 156.8 vs 135.4, 6: 179.0 vs 170.6, 8: 183.9 vs 183.5; `python -m bench`'s batch 8
# (256-token prompts) twice had int8 ahead (216 vs 168, 205 vs 178). With q/k/v and o 4-bit as well (GQA_FORMAT 4;
# a rerun: 256-token prompts, 32 steps, median of 3 interleaved rounds): 1: 110.9 vs 87.5, 2: 184.5 vs 156.9,
# 4: 239.5 vs 214.1, 6: 282.8 vs 263.4, 8: 297.3 vs 294.9. So steps of up to 6 rows; at 8 it is a wash.
DECODE_GRAPH_MAX_ROWS = 6
# ... and passes of up to this many tokens whose every position's logits are wanted (a draft checked in one pass,
# runtime.decoder.SlotDecoder._lookahead; a prompt's prefill stays on int8). One row, 200 cached positions, qa's
# merged decode graph against int8 with the run-time adapter (ms): 2 tokens 8.6 vs 14.3, 4: 11.8 vs 17.1,
# 9: 19.7 vs 24.3, 17: 33.3 vs 34.9.
DECODE_GRAPH_MAX_TOKENS = 16


# A task's adapter merged into a decode graph of its own (export/merged_decode.py builds them, NLPAPP_MERGED_DECODE
# chooses the tasks): models/onnx/merged-decode/<adapter version>/
MERGED_FOLDER = "merged-decode"
MERGED_FORMAT = 2  # bump when the merge or its check changes: cached graphs are then rebuilt (2: asymmetric 4-bit)


def merged_dir(models_dir: Path, version: str) -> Path:
    return Path(models_dir) / "onnx" / MERGED_FOLDER / version


def merged_manifest(models_dir: Path, version: str, export_path: Path) -> dict | None:
    """The record of adapter `version`'s merged decode graph built in this format on the export at `export_path`
    (its check passed, or refused it), or None where none was."""
    import json

    try:
        manifest = json.loads((merged_dir(models_dir, version) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != MERGED_FORMAT or manifest.get("export") != Path(export_path).name:
        return None
    return manifest


def merged_decode_graph(models_dir: Path, version: str, export_path: Path) -> Path | None:
    """The checked merged decode graph of adapter `version` built on the export at `export_path`, or None."""
    manifest = merged_manifest(models_dir, version, export_path)
    if manifest is None or not manifest.get("check", {}).get("passed"):
        return None
    return merged_dir(models_dir, version) / "model.onnx"


def is_gqa_export(onnx_path: Path) -> bool:
    return (Path(onnx_path).parent / "genai_config.json").exists()


class GqaCausalLM(OnnxCausalLM):
    """OnnxCausalLM for a GroupQueryAttention graph, plus slot buffers for in-place batched decoding."""

    in_place = True  # runtime.decoder picks the slot decoder for it

    def __init__(self, onnx_path: Path, tokenizer, precision: str, provider: str = "auto", threads: int = 0,
                 io_binding: bool | None = None, slots: int = 8, max_len: int = 2048, decode_graph: bool = False,
                 decode_graph_background: bool = False):
        super().__init__(onnx_path, tokenizer, precision, provider, threads, io_binding=False)
        if self.placement.device != "cpu":
            # the slot views below are host arrays; a device-resident cache needs device buffers (not built yet)
            raise ValueError("the in-place KV cache runs on the CPU provider only")
        self.slots, self.max_len, self.threads = slots, max_len, threads
        # decode_graph: one-token steps on the companion graph, when the export has one (same inputs, outputs and
        # cache layout, so both sessions work on the same slot buffers: prefill here, decode there). In the
        # background, steps run on int8 until it is open (opening it cost ~1.3 s of a start, measured).
        companion = Path(onnx_path).parent.parent / f"{precision}{DECODE_SUFFIX}" / "model.onnx"
        self._companion: dict = {}  # shared by adapter views (copy.copy), so a late session reaches them all
        if decode_graph and not precision.endswith(DECODE_SUFFIX) and companion.exists():
            def keep(session):
                self._companion["session"] = session

            self._open_aside(companion, keep, decode_graph_background)
        self._kv: dict[str, np.ndarray] = {}  # shared by adapter views (copy.copy keeps the same dict)
        self._bound = None  # (session, (first, n), feeds, IO binding) of the last step: see _binding

    def _open_aside(self, onnx_path: Path, keep, background: bool) -> None:
        """Open a decode graph's CPU session (on a thread if `background`) and hand it to keep(session); steps run on
        the shared graph until then, and for good if it fails to open (logged)."""
        def open_it():
            from runtime.providers import open_session

            try:
                session = open_session(onnx_path, "int8" + DECODE_SUFFIX, "cpu", self.threads)[0]
            except Exception:  # noqa: BLE001 - decoding goes on on the shared graph
                log.exception("the decode graph %s could not be opened; its steps stay on the shared graph",
                              onnx_path)
                return
            keep(session)

        if background:
            import threading

            threading.Thread(target=open_it, name="decode-graph-loader", daemon=True).start()
        else:
            open_it()

    def add_merged_decode(self, lora, onnx_path: Path, background: bool = False, key: str = "") -> None:
        """One-token steps whose rows all apply `lora` (runtime.adapters.LoraFeeds, the very object the task's
        view feeds) run on `onnx_path`, that adapter merged into a decode graph (export/merged_decode.py), when
        decode steps may use the decode graph at all. Opened in the background, steps use the shared graph
        until it is open; a session that fails to open is logged and never used. `key` (the task) replaces that
        key's earlier graph: a new adapter version lets the old one go."""
        def keep(session):  # held with its factors' dict, which run_slots recognises by identity
            self._companion.setdefault("merged", {})[key or lora.name] = (lora.feeds, session)

        self._open_aside(onnx_path, keep, background)

    def drop_merged_decode(self, key: str) -> None:
        self._companion.get("merged", {}).pop(key, None)

    @property
    def decode_session(self):
        """The companion graph's session for one-token steps; None where there is none (or not open yet)."""
        return self._companion.get("session")

    def _buffer(self, name: str) -> np.ndarray:
        if name not in self._kv:
            self._kv[name] = np.zeros((self.slots, self.kv_heads, self.max_len, self.head_dim), self.past_dtype)
        return self._kv[name]

    def run_slots(self, first: int, ids: np.ndarray, lengths: Sequence[int], decode_graph: bool = True,
                  keep: int = 1) -> np.ndarray:
        """One forward pass over slots first .. first+n-1, in place. ids [n, s]: each row's next s tokens; lengths:
        each row's length after them (cached + s). Returns the logits of each row's last `keep` tokens,
        [n, keep, vocab] (a graph with `logits_to_keep` computes no others). One-token steps of up to
        DECODE_GRAPH_MAX_ROWS rows run on the decode graph when this model has one and `decode_graph` allows it, and
        so do passes of up to DECODE_GRAPH_MAX_TOKENS that keep every position's logits (a draft's check)."""
        n, s = ids.shape
        decode_session = self.decode_session
        companion = (decode_graph and decode_session is not None and n <= DECODE_GRAPH_MAX_ROWS
                     and (s == 1 or keep == s <= DECODE_GRAPH_MAX_TOKENS))
        session = decode_session if companion else self.session
        feeds = self.lora.feeds if self.lora is not None else {}
        if companion:  # every row on one adapter that has a merged decode graph: that graph, no factors to feed
            for merged_feeds, merged_session in tuple(self._companion.get("merged", {}).values()):  # (a loader adds)
                if merged_feeds is feeds:
                    session, feeds = merged_session, {}
                    break
        if first + n > self.slots or max(lengths) > self.max_len:
            raise ValueError(f"slots {first}..{first + n - 1} / length {max(lengths)} exceed the cache "
                             f"({self.slots} slots of {self.max_len} tokens)")
        lengths = np.asarray(lengths, np.int64)
        mask = (np.arange(int(lengths.max()))[None, :] < lengths[:, None]).astype(np.int64)
        b = self._binding(session, first, n, feeds)
        b.bind_output("logits", "cpu")  # a fresh output each step (a prefill's and a step's shapes differ)
        b.bind_cpu_input("input_ids", np.ascontiguousarray(ids, np.int64))
        b.bind_cpu_input("attention_mask", mask)
        if self.keeps_logits:
            b.bind_cpu_input(KEEP_INPUT, np.full(1, keep, np.int64))
        session.run_with_iobinding(b)
        return b.get_outputs()[0].numpy()[:, -keep:]

    def _binding(self, session, first: int, n: int, feeds: dict):
        """The IO binding of slots first .. first+n-1 with `feeds` (the adapter factors) bound, kept for the next
        step while they stay the same: binding the 48 cache views and 240 factor inputs anew cost ~1 ms a step
        (Qwen 0.5B), and a running batch keeps its rows and adapters for many steps; only the ids and the mask
        change. One is kept: the decoder re-stacks the factors whenever a prompt chunk runs between steps, and a
        kept binding holds its factors (up to 32 MB a row with a rank-16 adapter)."""
        import onnxruntime as ort

        held = self._bound
        if held is not None and held[0] is session and held[1] == (first, n) and held[2] is feeds:
            return held[3]
        self._bound = None
        b = session.io_binding()
        b.bind_output("logits", "cpu")  # first: outputs come back in binding order
        for p, q in zip(self.past_names, self.present_names):
            view = ort.OrtValue.ortvalue_from_numpy(self._buffer(p)[first:first + n])  # no copy: the same memory
            b.bind_ortvalue_input(p, view)
            b.bind_ortvalue_output(q, view)
        for name, value in feeds.items():
            b.bind_cpu_input(name, np.ascontiguousarray(value))  # the binding holds the arrays it was given
        self._bound = (session, (first, n), feeds, b)  # holding them, the identity tests never meet a reused id
        return b

    def with_adapter(self, lora) -> "GqaCausalLM":
        view = super().with_adapter(lora)
        view._bound = None  # each view binds its own (a binding is not shared between threads)
        return view

    def read_slot(self, slot: int, length: int) -> dict[str, np.ndarray]:
        """A copy of the first `length` positions of a slot's cache, per past input: [kv_heads, length, head_dim]."""
        return {name: buf[slot, :, :length].copy() for name, buf in self._kv.items()}

    def write_slot(self, slot: int, kv: dict[str, np.ndarray], length: int) -> None:
        """Put the first `length` positions of `kv` (from read_slot) into a slot: its next run continues there."""
        for name in self.past_names:
            self._buffer(name)[slot, :, :length] = kv[name][:, :length]

    def move_slot(self, src: int, dst: int, length: int) -> None:
        """Copy a sequence's cache from one slot to another (packing the running rows after one leaves)."""
        for buf in self._kv.values():
            buf[dst, :, :length] = buf[src, :, :length]

    def generate_batch(self, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                       ignore_stop: bool = False) -> list[list[int]]:
        """Greedy decoding of up to `slots` prompts at once, in place: each prompt prefilled into its slot, then
        one step for all of them per token (benchmarks, evaluation)."""
        if len(prompts) > self.slots:
            raise ValueError(f"{len(prompts)} prompts for {self.slots} slots")
        stop = set() if ignore_stop else self.stop_ids
        last = [int(self.run_slots(i, np.asarray([p], np.int64), [len(p)])[0, -1].argmax())
                for i, p in enumerate(prompts)]
        lengths = [len(p) for p in prompts]
        out: list[list[int]] = [[] for _ in prompts]
        done = [t in stop for t in last]
        for i, t in enumerate(last):
            if not done[i]:
                out[i].append(t)
        for _ in range(max_new_tokens - 1):
            if all(done):
                break
            lengths = [n + 1 for n in lengths]
            logits = self.run_slots(0, np.asarray([[t] for t in last], np.int64), lengths)
            last = [int(x) for x in logits[:, -1].argmax(-1)]
            for i, t in enumerate(last):
                if not done[i]:
                    done[i] = t in stop
                    if not done[i]:
                        out[i].append(t)
        return out
