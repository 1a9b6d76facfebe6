"""int8 variants of a registered classifier: texts/s at batch 32 and validation accuracy of each.

    python -m bench.quant [--task sentiment] [--speed-texts 512] [--repeats 3]

Quantizes the task's fp32 ONNX model with `quantize_dynamic` (MatMul only) in four ways, from the shipped
recipe (down_proj MatMuls kept fp32) to every MatMul per-tensor, into a temporary folder; prints a table.
Answers "why is int8 classification not 3x PyTorch": what the faster variants cost in accuracy.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

VARIANTS = {  # name -> quantize_dynamic options on every MatMul; None: the recipe the app ships
    "shipped: per-channel, reduce_range, down_proj fp32": None,
    "all MatMuls, per-channel, reduce_range": dict(per_channel=True, reduce_range=True),
    "all MatMuls, per-channel": dict(per_channel=True, reduce_range=False),
    "all MatMuls, per-tensor": dict(per_channel=False, reduce_range=False),
}


def run(task_name: str, speed_texts: int, repeats: int) -> list[tuple[str, float, float]]:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoTokenizer

    from bench.__main__ import model_paths
    from export.onnx_export import quantize_int8
    from runtime.lm import OnnxClassifier
    from tasks import REGISTRY, build_data

    _, _, onnx_dir, _ = model_paths(task_name)
    src = Path(onnx_dir) / "fp32" / "model.onnx"
    tok = AutoTokenizer.from_pretrained(onnx_dir)
    val = build_data(task_name).val  # variants are compared on validation: the test split is for releases
    texts, labels = [r["text"] for r in val], [r["label"] for r in val]
    speed = sorted(texts[:speed_texts], key=len)
    names = REGISTRY[task_name].labels
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, opts) in enumerate(VARIANTS.items()):
            dst = Path(tmp) / f"v{i}.onnx"
            if opts is None:
                quantize_int8(src, dst)
            else:
                quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8, **opts)
            clf = OnnxClassifier(dst, tok, "int8", "cpu")
            clf.predict_proba(speed[:32])  # warm-up
            rates = []
            for _ in range(repeats):
                t = time.perf_counter()
                clf.predict_proba(speed, batch_size=32)
                rates.append(len(speed) / (time.perf_counter() - t))
            pred = clf.predict_proba(texts, batch_size=32).argmax(-1)
            acc = float(np.mean([names[int(p)] == y for p, y in zip(pred, labels)]))
            rows.append((name, statistics.median(rates), acc))
            print(f"{name:52s} {rows[-1][1]:7.1f} texts/s  accuracy {acc:.4f} (n={len(texts)})", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quant", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sentiment")
    p.add_argument("--speed-texts", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    run(args.task, args.speed_texts, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
