"""What the LoRA inputs cost a decode step: the served graph with rank-0 factors, with a task's adapter, and a copy
without the LoRA nodes (the bare base, as onnxruntime-genai would run it), timed at batch 1.

    python -m bench.lora_cost [--task summarize] [--precision int8-decode] [--rounds 4]

Also timed: the adapter with its inputs bound anew every step (run_slots keeps its binding since 2026-12-05), and
the adapter merged into a decode graph of its own, where `python -m export prepare` built one (NLPAPP_MERGED_DECODE).

Every projection of the shared base graph computes y = x W + (x A) B (export/lora_graph.py): 120 slots of 3 small
nodes each on Qwen 0.5B, run every step whatever the rank. This times one-token steps at positions 257..320 of a
slot (zeros in the cache: the time does not depend on its values), in interleaved rounds, and prints the median
ms per step of each variant. The copy without LoRA nodes is written to a temporary folder (~0.9 GB) and deleted.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def strip_lora(src: Path, dst: Path) -> int:
    """Copy the graph in `src` to `dst` without its LoRA nodes and inputs; returns how many nodes went."""
    import onnx

    from export.gqa_graph import _save
    from export.lora_graph import strip_lora as strip

    model = onnx.load(str(src / "model.onnx"))
    removed = strip(model)
    _save(model, dst)
    shutil.copy2(src / "genai_config.json", dst / "genai_config.json")
    return removed


def time_steps(lm, first_len: int = 257, steps: int = 64, rebind: bool = False) -> float:
    """Seconds per one-token step of slot 0 at lengths first_len.., through the served step (GqaCausalLM.run_slots,
    with whatever adapter `lm` applies); rebind: every step binds its inputs anew (as run_slots did before it
    kept its binding)."""
    import numpy as np

    ids = np.array([[42]], np.int64)
    t0 = time.perf_counter()
    for length in range(first_len, first_len + steps):
        if rebind:
            lm._bound = None
        lm.run_slots(0, ids, [length])
    return (time.perf_counter() - t0) / steps


def run(task: str, precision: str, rounds: int) -> dict[str, list[float]]:
    from config import settings
    from runtime import registry
    from runtime.adapters import read_adapter
    from runtime.gqa import DECODE_SUFFIX, GqaCausalLM, merged_decode_graph
    from runtime.tokenizer import FastTokenizer

    s = settings()
    mv = registry.current(s.models_dir, task)
    if mv is None or not mv.adapter:
        raise SystemExit(f"{task} serves no run-time adapter: run `python -m export prepare` first")
    graph_dir = Path(mv.path) / precision
    tokenizer = FastTokenizer(Path(mv.path))
    with tempfile.TemporaryDirectory(dir=s.models_dir) as tmp:
        removed = strip_lora(graph_dir, Path(tmp))

        def open_lm(path: Path) -> GqaCausalLM:  # one slot: steps run on `precision`'s graph itself
            return GqaCausalLM(path, tokenizer, precision, "cpu", threads=s.ort_threads, slots=1, max_len=512)

        with_lora, bare = open_lm(graph_dir / "model.onnx"), open_lm(Path(tmp) / "model.onnx")
        adapter = read_adapter(Path(mv.adapter), with_lora.session)
        adapted = with_lora.with_adapter(adapter)
        variants = {"rank-0 LoRA factors (no adapter)": with_lora,  # what a LoRA-ready graph feeds by default
                    f"{mv.version}'s adapter": adapted,
                    f"{mv.version}'s adapter, inputs bound anew every step": (adapted, True),
                    f"LoRA nodes removed ({removed} nodes)": bare}
        merged = merged_decode_graph(s.models_dir, mv.version, Path(mv.path))
        if merged and precision.endswith(DECODE_SUFFIX):  # built for this task (NLPAPP_MERGED_DECODE)
            variants[f"{mv.version}'s adapter merged into the decode graph"] = open_lm(merged)
        variants = {k: v if isinstance(v, tuple) else (v, False) for k, v in variants.items()}
        for lm, rebind in variants.values():  # warm-up
            time_steps(lm, steps=8, rebind=rebind)
        out: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(rounds):
            for name, (lm, rebind) in variants.items():
                out[name].append(time_steps(lm, rebind=rebind) * 1000)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lora_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="summarize")
    p.add_argument("--precision", default="int8-decode")
    p.add_argument("--rounds", type=int, default=4)
    a = p.parse_args(argv)
    res = run(a.task, a.precision, a.rounds)
    print(f"| {a.precision} graph, batch 1, positions 257..320 | ms per step (median of {a.rounds}) | tok/s | rounds |")
    print("|---|---|---|---|")
    for name, ms in res.items():
        med = statistics.median(ms)
        print(f"| {name} | {med:.2f} | {1000 / med:.1f} | {', '.join(f'{x:.2f}' for x in ms)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
