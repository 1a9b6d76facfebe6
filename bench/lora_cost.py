"""What the LoRA inputs cost a decode step: the served graph with rank-0 factors, with a task's adapter, and a copy
without the LoRA nodes (the bare base, as onnxruntime-genai would run it), timed at batch 1.

    python -m bench.lora_cost [--task summarize] [--precision int8-decode] [--rounds 4]

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

    model = onnx.load(str(src / "model.onnx"))
    graph = model.graph
    lora = [n for n in graph.node if "/lora" in n.name]
    # each slot's Add wrote the projection's old output name from `<y>_base`: give that name back to the projection
    rename = {n.input[0]: n.output[0] for n in lora if n.op_type == "Add"}
    keep = [n for n in graph.node if "/lora" not in n.name]
    for n in keep:
        for k, o in enumerate(n.output):
            n.output[k] = rename.get(o, o)
    del graph.node[:]
    graph.node.extend(keep)
    inputs = [i for i in graph.input if not i.name.startswith("lora_")]
    del graph.input[:]
    graph.input.extend(inputs)
    dst.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx_data", size_threshold=1024)
    shutil.copy2(src / "genai_config.json", dst / "genai_config.json")
    return len(lora)


def time_steps(session, feeds: dict, first_len: int = 257, steps: int = 64) -> float:
    """Seconds per one-token step over `steps` steps of a slot of length first_len.., as runtime/gqa.py runs them."""
    import numpy as np
    import onnxruntime as ort

    past = [i for i in session.get_inputs() if i.name.startswith("past_key_values")]
    present = [o.name for o in session.get_outputs() if o.name.startswith("present")]
    bufs = [np.zeros((1, p.shape[1], 2048, p.shape[3]), np.float32) for p in past]
    keep = any(i.name == "logits_to_keep" for i in session.get_inputs())
    t0 = time.perf_counter()
    for length in range(first_len, first_len + steps):
        b = session.io_binding()
        b.bind_output("logits", "cpu")
        for p, q, buf in zip(past, present, bufs):
            view = ort.OrtValue.ortvalue_from_numpy(buf)
            b.bind_ortvalue_input(p.name, view)
            b.bind_ortvalue_output(q, view)
        b.bind_cpu_input("input_ids", np.array([[42]], np.int64))
        b.bind_cpu_input("attention_mask", np.ones((1, length), np.int64))
        for name, value in feeds.items():
            b.bind_cpu_input(name, value)
        if keep:
            b.bind_cpu_input("logits_to_keep", np.ones(1, np.int64))
        session.run_with_iobinding(b)
    return (time.perf_counter() - t0) / steps


def run(task: str, precision: str, rounds: int) -> dict[str, list[float]]:
    from config import settings
    from runtime import registry
    from runtime.adapters import no_adapter, read_adapter
    from runtime.providers import open_session

    s = settings()
    mv = registry.current(s.models_dir, task)
    if mv is None or not mv.adapter:
        raise SystemExit(f"{task} serves no run-time adapter: run `python -m export prepare` first")
    graph_dir = Path(mv.path) / precision
    with tempfile.TemporaryDirectory(dir=s.models_dir) as tmp:
        removed = strip_lora(graph_dir, Path(tmp))
        with_lora = open_session(graph_dir / "model.onnx", precision, "cpu", s.ort_threads)[0]
        bare = open_session(Path(tmp) / "model.onnx", precision, "cpu", s.ort_threads)[0]
        variants = {"rank-0 LoRA factors (no adapter)": (with_lora, no_adapter(with_lora).feeds),
                    f"{mv.version}'s adapter": (with_lora, read_adapter(Path(mv.adapter), with_lora).feeds),
                    f"LoRA nodes removed ({removed} nodes)": (bare, {})}
        for session, feeds in variants.values():  # warm-up
            time_steps(session, feeds, steps=8)
        out: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(rounds):
            for name, (session, feeds) in variants.items():
                out[name].append(time_steps(session, feeds) * 1000)
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
