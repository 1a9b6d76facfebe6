"""The loaded models: one ONNX session per distinct export, shared by the tasks that use it, swappable live.

Generation tasks served as adapters on a LoRA-ready base graph share that one session: a task's backend is a
view that feeds its adapter's factors, so a newly registered adapter version is live without reloading the base."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from runtime import registry
from runtime.registry import ModelKind
from runtime.gqa import GqaCausalLM, is_gqa_export, merged_decode_graph
from runtime.lm import OnnxCausalLM, OnnxClassifier
from runtime.providers import Placement, choose_precision

log = logging.getLogger(__name__)


@dataclass
class Backend:
    version: registry.ModelVersion
    model: OnnxCausalLM | OnnxClassifier
    placement: Placement
    labels: list[str] | None = None  # classifier: class names in output order (config id2label)
    decoder: object = None  # LM: the session's continuous-batching decode loop (runtime.decoder), shared

    def stream(self, prompt_ids, sampling):
        """New token ids of one generation: through the session's continuous-batching loop when it has one, so
        concurrent answers of every task on this session share decode steps."""
        if self.decoder is not None:
            return self.decoder.stream(prompt_ids, sampling, self.model.lora)
        return self.model.stream(prompt_ids, sampling)

    @property
    def describe(self) -> str:
        tuned = "fine-tuned" if self.version.tuned else "un-tuned base model (zero-shot prompt)"
        if self.version.note:  # e.g. "un-tuned base model: adapter X was trained on a different base: ..."
            tuned = f"{tuned.split(' (')[0]}: {self.version.note}"
        return (f"model {self.version.version} ({tuned}) · {self.placement.provider.replace('ExecutionProvider', '')}"
                f" · {self.placement.precision}")


def _load_tokenizer(path: Path):
    from runtime.tokenizer import FastTokenizer  # not transformers: serving never imports torch (runtime/tokenizer.py)

    return FastTokenizer(path)


class ModelSet:
    """Maps task name -> Backend. Sessions are cached by (export path, precision) so tasks share them."""

    def __init__(self, models_dir: Path, provider: str = "auto", precision: str = "auto", threads: int = 0,
                 max_batch: int = 8, prefill_chunk: int = 64, prefix_cache_mb: float = 64,
                 decode_graph: bool = True, merged_decode: tuple[str, ...] = (), background: bool = True,
                 lookahead: int = 0):
        self.models_dir = Path(models_dir)
        self.provider, self.precision, self.threads = provider, precision, threads
        self.max_batch, self.prefill_chunk, self.prefix_cache_mb = max_batch, prefill_chunk, prefix_cache_mb
        self.decode_graph = decode_graph
        self.lookahead = lookahead  # prompt-lookup draft tokens a step (runtime.decoder.SlotDecoder)
        self.merged_decode = tuple(merged_decode)  # tasks whose steps run on their adapter's merged decode graph
        self.background = background  # open the decode graphs on a thread (a start's tabs answer sooner)
        self._sessions: dict[tuple[str, str], tuple[object, Placement]] = {}
        self._decoders: dict[tuple[str, str], object] = {}
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()

    def open(self, mv: registry.ModelVersion, task: str | None = None) -> Backend:
        import json

        manifest = json.loads((Path(mv.path) / "manifest.json").read_text())
        precision = choose_precision(self.precision, self.provider, manifest["precisions"])
        key = (mv.path, precision)
        if key not in self._sessions:
            tok = _load_tokenizer(Path(mv.path))
            onnx_path = Path(mv.path) / precision / "model.onnx"
            if mv.kind == ModelKind.LM and is_gqa_export(onnx_path):  # fused attention: its cache in place
                model = GqaCausalLM(onnx_path, tok, precision, self.provider, self.threads, slots=self.max_batch,
                                    decode_graph=self.decode_graph, decode_graph_background=self.background)
            else:
                cls = OnnxCausalLM if mv.kind == ModelKind.LM else OnnxClassifier
                model = cls(onnx_path, tok, precision, self.provider, self.threads)
            self._sessions[key] = (model, model.placement)
        model, placement = self._sessions[key]
        decoder = None
        if mv.kind == ModelKind.LM:
            from runtime.decoder import decoder_for

            if key not in self._decoders:
                self._decoders[key] = decoder_for(model, self.max_batch, self.prefill_chunk, self.prefix_cache_mb,
                                                  self.lookahead)
            decoder = self._decoders[key]
        if mv.adapter:  # a view of the shared base session that applies this version's adapter
            from runtime.adapters import read_adapter

            lora = read_adapter(Path(mv.adapter), model.session, mv.version)
            model = model.with_adapter(lora)
            if task in self.merged_decode and self.decode_graph and isinstance(model, GqaCausalLM):
                self._open_merged(model, lora, mv, task)
        labels = None
        if mv.kind == ModelKind.CLASSIFIER:
            cfg = json.loads((Path(mv.path) / "config.json").read_text())
            labels = [cfg["id2label"][str(i)] for i in range(len(cfg["id2label"]))]
        return Backend(mv, model, placement, labels, decoder)

    def _open_merged(self, model: GqaCausalLM, lora, mv: registry.ModelVersion, task: str) -> None:
        """The adapter's own decode graph (export/merged_decode.py) for steps of this task alone, if it is built for
        this version on this export; else the task decodes on the shared graph, as every other task."""
        model.drop_merged_decode(task)  # an earlier version's graph, if any
        path = merged_decode_graph(self.models_dir, mv.version, Path(mv.path))
        if path is None:
            log.warning("%s has no merged decode graph on %s (python -m export prepare builds it): its steps run on "
                        "the shared graph", mv.version, Path(mv.path).name)
            return
        model.add_merged_decode(lora, path, background=self.background, key=task)
        log.info("%s decodes on its merged graph %s when its rows run alone", mv.version, path.parent.name)

    def load(self, task: str) -> Backend:
        """(Re)load the registry's current version for `task`; a new version replaces the old one live."""
        mv = registry.current(self.models_dir, task)
        if mv is None:
            raise LookupError(f"no model registered for task {task!r}: run `python -m export prepare`")
        with self._lock:
            old = self._backends.get(task)
            if old is None or old.version.version != mv.version or old.version.path != mv.path:
                self._backends[task] = self.open(mv, task)
                log.info("task %s serves %s", task, self._backends[task].describe)
            return self._backends[task]

    def get(self, task: str) -> Backend:
        backend = self._backends.get(task)
        return backend if backend is not None else self.load(task)

    def peek(self, task: str) -> Backend | None:
        """The loaded backend, or None while it is still loading (never blocks)."""
        return self._backends.get(task)

    def load_in_background(self, tasks: list[str], warmups: dict | None = None) -> threading.Thread:
        """Load `tasks` in order on one thread, so the server can answer while models load. A request for a
        task not loaded yet loads it at once through get() (it jumps the queue); the loader then skips it."""
        warmups = warmups or {}

        def run():
            import time

            t0 = time.perf_counter()
            for task in tasks:
                try:
                    self.load(task)
                    if warmups.get(task):
                        warmups[task]()
                except Exception:  # noqa: BLE001 - that task reports "not available"; the others still load
                    log.exception("loading %s failed", task)
                log.info("task %s ready after %.1f s", task, time.perf_counter() - t0)
            self.all_loaded.set()

        self.all_loaded = threading.Event()
        thread = threading.Thread(target=run, name="model-loader", daemon=True)
        thread.start()
        return thread

    def refresh(self) -> list[str]:
        """Pick up newly registered versions without a restart; returns the tasks that changed."""
        changed = []
        for task in list(self._backends):
            before = self._backends[task].version.version
            if self.load(task).version.version != before:
                changed.append(task)
        with self._lock:  # free sessions no task serves any more
            used = {(b.version.path, b.placement.precision) for b in self._backends.values()}
            for key in [k for k in self._sessions if k not in used]:
                del self._sessions[key]
                decoder = self._decoders.pop(key, None)
                if decoder is not None:
                    decoder.close()  # its thread would otherwise hold the old session forever
        return changed
