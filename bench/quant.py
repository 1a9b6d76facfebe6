"""int8 variants of a registered classifier against its fp32 export: validation score, fidelity, texts/s.

    python -m bench.quant [--task sentiment] [--speed-texts 512] [--repeats 3]

Quantizes the task's fp32 ONNX model in a few ways around the shipped recipe (export.onnx_export.quantize_int8:
per-channel dynamic int8 on MatMuls and the token embedding, down_proj 4-bit weight-only, the score head fp32) into a
temporary folder and prints, per variant, the validation score (per language where the task has groups), how
many answers equal fp32's, the mean change of the class log-probabilities from fp32's, and texts/s at batch 32.
Variants are compared on validation: the test split is for releases.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

DOWN, HEAD = "down_proj", "/score/"


def _edge_layers(k: int, n_layers: int) -> tuple[str, ...]:
    return tuple(f"/layers.{i}/" for i in [*range(k), *range(n_layers - k, n_layers)])


def variants(n_layers: int, only: str = "") -> dict[str, dict | None]:
    """name -> quantize_int8 options (None: the fp32 export itself); `only`: fp32, the shipped recipe and the
    variants whose name contains it."""
    nbits4 = {f"/{DOWN}/": dict(bits=4, block_size=32, accuracy_level=4)}
    every = {
        "fp32": None,
        # the shipped recipe (export.onnx_export: FP32_MATMULS, NBITS_MATMULS): down_proj weight-only instead of
        # fp32 (418 MB of Qwen 0.5B's classifier); its input, the MLP's outlier activations, is quantized per block
        # of 32 at accuracy level 4, not per tensor as dynamic int8 does
        "shipped (recipe 4): down_proj 4-bit blocks of 32 (MatMulNBits), score head fp32": dict(
            keep_fp32=(HEAD,), nbits=nbits4),
        "recipe 3: down_proj and score head fp32": dict(keep_fp32=(DOWN, HEAD)),
        "recipe 2: down_proj fp32, score head int8": dict(keep_fp32=(DOWN,)),
        "recipe 3, 8-bit weights (no reduce_range)": dict(keep_fp32=(DOWN, HEAD), reduce_range=False),
        "recipe 3, first and last 2 layers fp32 too": dict(keep_fp32=(DOWN, HEAD, *_edge_layers(2, n_layers))),
        "down_proj 8-bit blocks of 32 (MatMulNBits), score head fp32": dict(keep_fp32=(HEAD,), nbits={
            f"/{DOWN}/": dict(bits=8, block_size=32, accuracy_level=4)}),
    }
    return {k: v for i, (k, v) in enumerate(every.items()) if i < 2 or only in k}


def _logp(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, 1e-12, 1))


def run(task_name: str, speed_texts: int, repeats: int, only: str = "") -> list[dict]:
    import json

    from sklearn.metrics import f1_score

    from bench.__main__ import model_paths
    from export.onnx_export import INT8_OPS, quantize_int8
    from runtime.lm import OnnxClassifier
    from runtime.registry import ModelKind
    from runtime.tokenizer import FastTokenizer
    from tasks import REGISTRY, build_data

    _, _, onnx_dir, _ = model_paths(task_name)
    src = Path(onnx_dir) / "fp32" / "model.onnx"
    tok = FastTokenizer(Path(onnx_dir))
    n_layers = json.loads((Path(onnx_dir) / "config.json").read_text())["num_hidden_layers"]
    val = build_data(task_name).val
    texts = [r["text"] for r in val]
    names = list(REGISTRY[task_name].labels)
    y = np.array([names.index(r["label"]) for r in val])
    groups = np.array([r.get("lang", "") for r in val])
    speed = sorted(texts[:speed_texts], key=len)
    rows, fp32 = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, opts) in enumerate(variants(n_layers, only).items()):
            path = src
            if opts is not None:
                path = Path(tmp) / f"v{i}" / "model.onnx"
                quantize_int8(src, path, INT8_OPS[ModelKind.CLASSIFIER], **opts)
            clf = OnnxClassifier(path, tok, "fp32" if opts is None else "int8", "cpu")
            clf.predict_proba(speed[:32])  # warm-up
            rates = []
            for _ in range(repeats):
                t = time.perf_counter()
                clf.predict_proba(speed, batch_size=32)
                rates.append(len(speed) / (time.perf_counter() - t))
            p = clf.predict_proba(texts, batch_size=32)
            fp32 = p if fp32 is None else fp32
            pred = p.argmax(-1)
            row = {"variant": name, "texts/s": statistics.median(rates), "accuracy": float((pred == y).mean()),
                   "macro-F1": float(f1_score(y, pred, average="macro")),
                   **{f"accuracy {g}": float((pred == y)[groups == g].mean()) for g in sorted(set(groups)) if g},
                   "equal to fp32": float((pred == fp32.argmax(-1)).mean()),
                   "log-prob change": float(np.abs(_logp(p) - _logp(fp32)).mean()),
                   "MB": round(sum(f.stat().st_size for f in path.parent.iterdir()) / 2**20)}
            rows.append(row)
            if len(rows) == 1:
                print("| " + " | ".join(row) + " |")
            print(" | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()), flush=True)
            del clf
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quant", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sentiment")
    p.add_argument("--speed-texts", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default="", help="fp32, the shipped recipe and the variants whose name contains this")
    args = p.parse_args(argv)
    run(args.task, args.speed_texts, args.repeats, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
