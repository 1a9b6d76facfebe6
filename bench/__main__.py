"""Benchmark PyTorch eager vs ONNX Runtime fp32 vs int8 (and fp16 on CUDA) on the registered task models,
and write the table to BENCHMARKS.md. Run on demand: `python -m bench` (about 15 minutes on 2 CPU cores)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def memory_bandwidth_gbs(mb: int = 512, repeats: int = 5) -> float:
    """Read bandwidth of all cores: each thread sums its own slice of a large array (numpy lets go of the GIL), so
    the array streams from memory once. One thread alone reads less than the runtime's threads do."""
    from concurrent.futures import ThreadPoolExecutor

    a = np.ones(mb * (1 << 20) // 8, dtype=np.float64)
    parts = np.array_split(a, os.cpu_count() or 1)
    with ThreadPoolExecutor(len(parts)) as pool:
        read = lambda: list(pool.map(np.sum, parts))  # noqa: E731
        read()
        best = min(_t(read) for _ in range(repeats))
    return a.nbytes / best / 1e9


def _t(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bytes_per_token(onnx_path: Path) -> tuple[int, int]:
    """Weight bytes a decode step reads: every initializer except the embedding table (one row is gathered)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path), load_external_data=True)
    gathered = {n.input[0] for n in model.graph.node if n.op_type == "Gather"}
    # a tied embedding (SmolLM2) is the fp32 lm_head weight transposed, which ONNX Runtime folds once at load
    gathered |= {n.input[0] for n in model.graph.node if n.op_type == "Transpose" and n.output[0] in gathered}
    total = skipped = 0
    for init in model.graph.initializer:
        size = numpy_helper.to_array(init).nbytes
        total += size
        if init.name in gathered and size > 10_000_000:
            skipped += size
    return total - skipped, total


def worker(*args: str, timeout: int = 1800, pythonpath: str = "") -> dict:
    cmd = [sys.executable, "-m", "bench.worker", *args]
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"bench worker failed: {' '.join(args)}\n{out.stderr[-2000:]}")


def run_variants(kind: str, ckpt: str, onnx_dir: str, repeats: str, extra: list[str],
                 fp16: bool = False) -> dict[str, dict]:
    """PyTorch eager fp32, ONNX Runtime fp32 and int8 (and fp16 on both engines when asked), each in a worker."""
    out = {"PyTorch eager fp32": worker(kind, "--engine", "torch", "--ckpt", ckpt, "--repeats", repeats, *extra)}
    for prec in ("fp32", "int8"):
        out[f"ONNX Runtime {prec}"] = worker(kind, "--engine", "ort", "--precision", prec, "--onnx", onnx_dir,
                                             "--ckpt", ckpt, "--repeats", repeats, *extra)
    if fp16 and Path(onnx_dir, "fp16", "model.onnx").exists():
        out["PyTorch fp16 (CUDA)"] = worker(kind, "--engine", "torch", "--precision", "fp16", "--ckpt", ckpt,
                                            "--repeats", repeats, *extra)
        out["ONNX Runtime fp16 (CUDA, IO binding)"] = worker(kind, "--engine", "ort", "--precision", "fp16",
                                                             "--onnx", onnx_dir, "--ckpt", ckpt, "--repeats",
                                                             repeats, *extra)
    return out


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


def versions() -> str:
    import onnxruntime
    import torch
    import transformers

    return (f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
            f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}")


def machine() -> str:
    cpu = "?"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    except Exception:  # noqa: BLE001
        pass
    return f"{os.cpu_count()} cores ({cpu}){gpu}"


def model_paths(task: str) -> tuple[str, str, str, str]:
    """(version, PyTorch checkpoint, ONNX folder, adapter folder or "") of a task's current registered model.
    An adapter served on the shared base graph runs on PyTorch as base + un-merged PEFT adapter."""
    from config import settings
    from runtime import registry

    s = settings()
    mv = registry.current(s.models_dir, task)
    if mv is None:
        raise SystemExit(f"no model registered for {task}: run `python -m export prepare` first")
    if mv.tuned and not mv.adapter:
        ckpt = s.models_dir / "merged" / mv.version
    else:
        from export.base_model import cache_name
        from export.prepare import task_base

        ckpt = s.models_dir / "base" / cache_name(task_base(s, task))
    return mv.version, str(ckpt), mv.path, mv.adapter


def merged_export(version: str) -> str | None:
    """The merged single-task export of an adapter version, if one was built (NLPAPP_ADAPTERS=merged)."""
    from config import settings
    from export.onnx_export import export_key, load_export

    s = settings()
    ckpt = s.models_dir / "merged" / version
    if not (ckpt / "MERGED").exists():
        return None
    found = load_export(s.models_dir / "onnx" / f"lm-{export_key(ckpt, 'lm', ['fp32', 'int8'])}")
    return str(found.path) if found else None


def optimum_shared_export(ckpt: str) -> str | None:
    """The optimum LoRA-ready export of a base, if one was built (NLPAPP_GRAPH=optimum): the runtime before the
    fused graph, timed beside it."""
    from export.lora_graph import LORA_FORMAT
    from export.onnx_export import export_key, load_export
    from config import settings

    key = export_key(Path(ckpt), "lm", ["fp32", "int8"])
    found = load_export(settings().models_dir / "onnx" / f"lm-lora-{key}-f{LORA_FORMAT}")
    return str(found.path) if found else None


def int8_vs_fp32_metric(task_name: str, n: int) -> dict:
    from config import settings
    from export.evaluate import eval_rows, open_version, score
    from runtime import registry
    from tasks import REGISTRY, build_data

    s = settings()
    task = REGISTRY[task_name]
    mv = registry.current(s.models_dir, task_name)
    rows = eval_rows(task, build_data(task_name), n, split="val")  # a benchmark must not look at the test split
    out = {}
    for precision in ("fp32", "int8"):
        m = score(task, open_version(s.models_dir, mv, precision), s, rows)
        out[precision] = {k: v for k, v in m.items() if isinstance(v, float) and k != "seconds"}
    return out


def classification(task: str, r: str) -> list[str]:
    """The classifier's table: PyTorch eager vs ONNX Runtime fp32 and int8, accuracy on the validation split."""
    version, ckpt, onnx_dir, _ = model_paths(task)
    c = run_variants("classify", ckpt, onnx_dir, r, ["--task", task])
    base = c["PyTorch eager fp32"]
    lines = [f"### Classification: `{task}` ({version})", "",
             "| variant | texts/s batch 1 | texts/s batch 32 (sorted) | x PyTorch (b32) | validation accuracy | peak RSS MB |",
             "|---|---|---|---|---|---|"]
    for name, m in c.items():
        lines.append(f"| {name} | {m['texts_per_s_b1']:.1f} | {m['texts_per_s_b32']:.1f} | "
                     f"{m['texts_per_s_b32'] / base['texts_per_s_b32']:.2f} | {m['accuracy']:.4f} (n={m['n_val']}) | "
                     f"{m['peak_rss_mb']:.0f} |")
    return lines + [""]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--classify-task", default="sentiment", help="'' skips the classifier's table")
    p.add_argument("--generate-task", default="summarize")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--metric-n", type=int, default=60, help="validation examples for the LM int8-vs-fp32 metric")
    p.add_argument("--genai", default="int4,int8",
                   help="onnxruntime-genai precisions to time beside ours ('' for none; builds under models/genai/)")
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = p.parse_args(argv)
    cmdline = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    r = str(args.repeats)
    lines = [f"## Model speed ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"Command: `{cmdline.strip()}`. Machine: {machine()}; ONNX Runtime threads: default (all cores); "
             f"{versions()}. Each figure is the median of {args.repeats} runs; every variant runs in its own "
             "process (peak RSS is that process's).", ""]

    cuda = _cuda_available()

    if args.classify_task:
        lines += classification(args.classify_task, r)

    # generation (on a CUDA host also PyTorch fp16 vs ONNX Runtime fp16 with IO binding)
    version, ckpt, onnx_dir, adapter = model_paths(args.generate_task)
    g = run_variants("generate", ckpt, onnx_dir, r, ["--adapter", adapter] if adapter else [], fp16=cuda)
    if adapter:  # the runtime before the shared base graph: the adapter merged into its own export
        from runtime.gqa import is_gqa_export

        kind = "fused graph" if is_gqa_export(Path(onnx_dir) / "int8" / "model.onnx") else "shared base"
        g = {f"{k} ({kind} + run-time adapter)" if k.startswith("ONNX") else f"{k} (base + PEFT adapter)": v
             for k, v in g.items()}
        merged = merged_export(version)
        if merged:
            g["ONNX Runtime int8, merged single-task export (previous runtime)"] = worker(
                "generate", "--engine", "ort", "--precision", "int8", "--onnx", merged, "--ckpt", ckpt,
                "--repeats", r)
        optimum = optimum_shared_export(ckpt)
        if optimum and optimum != onnx_dir:
            g["ONNX Runtime int8, optimum graph + run-time adapter (KV cache concatenated)"] = worker(
                "generate", "--engine", "ort", "--precision", "int8", "--onnx", optimum, "--ckpt", ckpt,
                "--adapter", adapter, "--repeats", r)
        from config import settings
        from runtime.gqa import merged_decode_graph

        own = merged_decode_graph(settings().models_dir, version, Path(onnx_dir))
        if own:  # NLPAPP_MERGED_DECODE: steps of up to 4 rows of this task on the adapter merged into a decode graph
            g["ONNX Runtime int8 prefill + the adapter merged into its decode graph (NLPAPP_MERGED_DECODE)"] = worker(
                "generate", "--engine", "ort", "--precision", "int8", "--onnx", onnx_dir, "--ckpt", ckpt,
                "--adapter", adapter, "--merged-decode", str(own), "--repeats", r)
        g["ONNX Runtime int8, served base graph, no adapter"] = worker(
            "generate", "--engine", "ort", "--precision", "int8", "--onnx", onnx_dir, "--ckpt", ckpt, "--repeats", r)
        if Path(onnx_dir, "int8-decode", "model.onnx").exists():  # NLPAPP_DECODE_GRAPH=0 (translation's steps)
            g["ONNX Runtime int8, served base graph, no adapter, decode steps on int8 too"] = worker(
                "generate", "--engine", "ort", "--precision", "int8", "--onnx", onnx_dir, "--ckpt", ckpt,
                "--repeats", r, "--no-decode-graph")
    if args.genai:  # the peer runtime on the same base (no adapter), each precision built by its own builder
        from bench import genai

        for prec in args.genai.split(","):
            g[f"onnxruntime-genai {prec} (base, no adapter)"] = worker(
                "generate", "--engine", "genai", "--onnx", str(genai.build(Path(ckpt), prec)), "--ckpt", ckpt,
                "--repeats", r, pythonpath=str(genai.runtime_path()))
    bw = memory_bandwidth_gbs()
    decode_graph = Path(onnx_dir) / "int8-decode" / "model.onnx"  # where the served int8 decode steps run, if any
    int8_bytes, int8_total = bytes_per_token(decode_graph if decode_graph.exists() else
                                             Path(onnx_dir) / "int8" / "model.onnx")
    bound = bw * 1e9 / int8_bytes
    base = next(iter(g.values()))
    lines += [f"### Generation: `{args.generate_task}` ({version}), 256-token prompt, 64 new tokens, greedy", "",
              "| variant | time to first token ms | decode tok/s batch 1 | x PyTorch (b1) | decode tok/s batch 8 | peak RSS MB |",
              "|---|---|---|---|---|---|"]
    for name, m in g.items():
        lines.append(f"| {name} | {m['ttft_256_ms']:.0f} | {m['decode_tok_s_b1']:.1f} | "
                     f"{m['decode_tok_s_b1'] / base['decode_tok_s_b1']:.2f} | {m['decode_tok_s_b8']:.1f} | "
                     f"{m['peak_rss_mb']:.0f} |")
    i8 = next(v for k, v in g.items() if k.startswith("ONNX Runtime int8"))["decode_tok_s_b1"]
    ours = g.get("ONNX Runtime int8, served base graph, no adapter")
    peer = g.get("onnxruntime-genai int4 (base, no adapter)")
    if ours and peer:
        lines += ["", f"Ours against the peer, both on the bare base: decode batch 1 {ours['decode_tok_s_b1']:.1f} vs "
                  f"{peer['decode_tok_s_b1']:.1f} tok/s ({ours['decode_tok_s_b1'] / peer['decode_tok_s_b1']:.0%}), "
                  f"batch 8 {ours['decode_tok_s_b8']:.1f} vs {peer['decode_tok_s_b8']:.1f}, time to first token "
                  f"{ours['ttft_256_ms']:.0f} vs {peer['ttft_256_ms']:.0f} ms, peak RSS {ours['peak_rss_mb']:.0f} vs "
                  f"{peer['peak_rss_mb']:.0f} MB."]
    lines += ["", f"Memory read bandwidth (numpy sum over 512 MB, one thread per core): {bw:.1f} GB/s. Weights a "
              f"decode step reads ({decode_graph.parent.name if decode_graph.exists() else 'int8'} graph): "
              f"{int8_bytes / 1e6:.0f} MB (of {int8_total / 1e6:.0f} MB; the embedding table is "
              "gathered, not read). "
              f"Bandwidth bound: {bound:.1f} tok/s; measured int8 batch 1: {i8:.1f} tok/s = {i8 / bound:.0%} of the "
              "bound.", ""]

    metric = int8_vs_fp32_metric(args.generate_task, args.metric_n)
    lines += [f"Task metric, int8 vs fp32 ONNX, {args.generate_task}, {args.metric_n} validation examples: "
              + "; ".join(f"{k}: fp32 {metric['fp32'][k]:.4f}, int8 {metric['int8'][k]:.4f}" for k in metric["fp32"]),
              ""]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    old = out.read_text() if out.exists() else "# Benchmarks\n"
    marker = "<!-- bench:model-speed -->"
    head = old.split(marker)[0].rstrip() + "\n\n" if marker in old else old.rstrip() + "\n\n"
    tail = old.split(marker)[2] if old.count(marker) >= 2 else ""
    out.write_text(head + marker + "\n" + text + "\n" + marker + tail)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
