"""4-bit weights (MatMulNBits) for the shared LoRA-ready base graph: build the variants, then time each.

    python -m bench.int4 [--block 32] [--accuracy-level 4]

Quantizes the base export's fp32 graph with ONNX Runtime's MatMulNBits quantizer (symmetric, the given block
size and accuracy level), once with lm_head included and once with it kept in fp32, adds the LoRA inputs
(export/lora_graph.py), and runs `bench.worker generate` on each with the qa adapter: time to first token,
decode tok/s at batch 1 and 8, peak RSS. Decides whether int4 should replace the served int8 weights.
Needs `python -m export prepare` (shared mode) first. Writes under models/bench-int4/ (git-ignored).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def build(src_fp32: Path, out: Path, block: int, level: int, keep_head: bool) -> Path:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    from export.lora_graph import add_lora_inputs, find_slots

    model = onnx.load(str(src_fp32))
    slots = find_slots(model.graph)
    exclude = [n.name for n in model.graph.node if n.op_type == "MatMul" and "lm_head" in n.name] if keep_head else []
    cfg = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, accuracy_level=level)
    q = MatMulNBitsQuantizer(model, block_size=block, is_symmetric=True, accuracy_level=level,
                             nodes_to_exclude=exclude, algo_config=cfg)
    q.process()
    model = q.model.model
    add_lora_inputs(model, slots)
    (out / "int4").mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "int4" / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx_data", size_threshold=1024)
    return out


def main(argv=None) -> int:
    import logging

    from bench.__main__ import model_paths, worker
    from config import settings

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="qa")
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--accuracy-level", type=int, default=4)
    p.add_argument("--repeats", default="3")
    a = p.parse_args(argv)
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    version, ckpt, lora_dir, adapter = model_paths(a.task)
    if not adapter:
        raise SystemExit(f"{a.task} is not served on the shared base graph: run `python -m export prepare`")
    manifest = json.loads((Path(lora_dir) / "manifest.json").read_text())
    src = Path(manifest["base_export"]) / "fp32" / "model.onnx"
    root = settings().models_dir / "bench-int4"
    rows = {"int8 (served)": worker("generate", "--engine", "ort", "--precision", "int8", "--onnx", lora_dir,
                                    "--ckpt", ckpt, "--adapter", adapter, "--repeats", a.repeats)}
    for keep_head in (False, True):
        name = f"int4 block {a.block}, accuracy level {a.accuracy_level}, lm_head {'fp32' if keep_head else 'int4'}"
        out = root / ("keep-head" if keep_head else "all")
        build(src, out, a.block, a.accuracy_level, keep_head)
        for f in Path(lora_dir).iterdir():  # tokenizer and config
            if f.is_file():
                shutil.copy2(f, out / f.name)
        rows[name] = worker("generate", "--engine", "ort", "--precision", "int4", "--onnx", str(out), "--ckpt", ckpt,
                            "--adapter", adapter, "--repeats", a.repeats)
    print(f"{a.task} adapter ({version}) on the shared base graph, 256-token prompt, 64 greedy tokens")
    print("| weights | time to first token ms | decode tok/s b1 | decode tok/s b8 | peak RSS MB |\n|---|---|---|---|---|")
    for name, m in rows.items():
        print(f"| {name} | {m['ttft_256_ms']:.0f} | {m['decode_tok_s_b1']:.1f} | {m['decode_tok_s_b8']:.1f} | "
              f"{m['peak_rss_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
