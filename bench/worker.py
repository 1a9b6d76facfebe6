"""One benchmark variant in its own process (so peak memory is its own): prints one JSON line.

    python -m bench.worker classify  --engine torch|ort --precision fp32|int8 --ckpt DIR --onnx DIR --task T
    python -m bench.worker generate  --engine torch|ort --precision fp32|int8|fp16 --ckpt DIR --onnx DIR
                                     [--adapter DIR]  (a LoRA adapter: PEFT on torch; run-time inputs on ort)
                                     [--merged-decode ONNX]  (ort + adapter: its steps on that merged decode graph)
    python -m bench.worker generate  --engine genai --ckpt DIR --onnx GENAI_DIR  (onnxruntime-genai on PYTHONPATH)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _median_rate(fn, work: float, repeats: int) -> tuple[float, list[float]]:
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(work / (time.perf_counter() - t))
    return statistics.median(rates), rates


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def classify(args) -> dict:
    import numpy as np

    from tasks import REGISTRY, build_data

    task = REGISTRY[args.task]
    val = build_data(args.task).val  # a benchmark must not look at the test split (the cards count those looks)
    texts = [r["text"] for r in val]
    labels = [r["label"] for r in val]
    b1 = texts[:48]
    b32 = sorted(texts[:512], key=len)  # sorted by length: padding waste is what batching loses
    if args.engine == "torch":
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from runtime.lm import CLASSIFIER_MAX_TOKENS

        torch.set_num_threads(os.cpu_count() or 2)
        tok = AutoTokenizer.from_pretrained(args.ckpt)
        model = AutoModelForSequenceClassification.from_pretrained(args.ckpt, dtype=torch.float32).eval()

        def predict(batch, bs):
            out = []
            with torch.no_grad():
                for i in range(0, len(batch), bs):
                    enc = tok(batch[i:i + bs], padding=True, truncation=True, max_length=CLASSIFIER_MAX_TOKENS,
                              return_tensors="pt", padding_side="right")
                    out.append(torch.softmax(model(**enc).logits, -1).numpy())
            return np.concatenate(out)
    else:
        from transformers import AutoTokenizer

        from runtime.lm import OnnxClassifier

        tok = AutoTokenizer.from_pretrained(args.onnx)
        clf = OnnxClassifier(os.path.join(args.onnx, args.precision, "model.onnx"), tok, args.precision, "cpu",
                             threads=args.threads)

        def predict(batch, bs):
            return clf.predict_proba(batch, batch_size=bs)

    predict(b1[:4], 1)  # warm-up
    r1, _ = _median_rate(lambda: predict(b1, 1), len(b1), args.repeats)
    r32, _ = _median_rate(lambda: predict(b32, 32), len(b32), args.repeats)
    probs = predict(texts, 32)
    acc = float(np.mean([task.labels[int(i)] == l for i, l in zip(probs.argmax(-1), labels)]))
    return {"texts_per_s_b1": r1, "texts_per_s_b32": r32, "accuracy": acc, "n_val": len(texts),
            "peak_rss_mb": peak_rss_mb()}


def generate(args) -> dict:
    import numpy as np
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.ckpt if args.engine in ("torch", "genai") else args.onnx)
    base = ("The harbour town woke slowly. Fishermen checked their nets while the bakery opened its doors, and "
            "children ran along the quay towards the school on the hill. ")
    ids = tok(base * 20, add_special_tokens=False).input_ids[:256]
    new = args.new_tokens
    if args.engine == "torch":
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(os.cpu_count() or 2)
        dtype = torch.float16 if args.precision == "fp16" else torch.float32
        dev = "cuda" if args.precision == "fp16" else "cpu"
        model = AutoModelForCausalLM.from_pretrained(args.ckpt, dtype=dtype)
        if args.adapter:  # un-merged, as a PEFT user would run it
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, args.adapter)
        model = model.to(dev).eval()

        def run(batch, n):
            x = torch.tensor([ids] * batch, device=dev)
            with torch.no_grad():
                model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n,
                               do_sample=False, pad_token_id=tok.pad_token_id)
                if dev == "cuda":
                    torch.cuda.synchronize()
    elif args.engine == "genai":
        import onnxruntime_genai as og

        config = og.Config(args.onnx)
        # its default is 1 intra-op thread; ours use every core
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": args.threads or os.cpu_count() or 2}}}}))
        model = og.Model(config)

        def run(batch, n):
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=len(ids) + n, min_length=len(ids) + n, do_sample=False,
                                      batch_size=batch)
            gen = og.Generator(model, params)
            gen.append_tokens(np.array([ids] * batch, dtype=np.int32))  # the prefill
            for _ in range(n):
                gen.generate_next_token()
    else:
        from runtime.gqa import GqaCausalLM, is_gqa_export
        from runtime.lm import OnnxCausalLM

        path = os.path.join(args.onnx, args.precision, "model.onnx")
        cls = GqaCausalLM if is_gqa_export(path) else OnnxCausalLM  # fused graph: decoded in place, in slots
        extra = {"decode_graph": not args.no_decode_graph} if cls is GqaCausalLM else {}
        lm = cls(path, tok, args.precision, "cuda" if args.precision == "fp16" else "cpu", threads=args.threads,
                 **extra)
        if args.adapter:
            from runtime.adapters import read_adapter

            lora = read_adapter(args.adapter, lm.session)
            lm = lm.with_adapter(lora)
            if args.merged_decode:  # NLPAPP_MERGED_DECODE: this adapter's steps on its own merged decode graph
                lm.add_merged_decode(lora, args.merged_decode)

        def run(batch, n):
            lm.generate_batch([ids] * batch, n, ignore_stop=True)

    run(1, 2)  # warm-up
    out = {}
    for batch in (1, 8):
        prefill = statistics.median(_timed(lambda: run(batch, 1)) for _ in range(args.repeats))
        total = statistics.median(_timed(lambda: run(batch, new)) for _ in range(args.repeats))
        if batch == 1:
            out["ttft_256_ms"] = prefill * 1000
        out[f"decode_tok_s_b{batch}"] = batch * (new - 1) / max(total - prefill, 1e-6)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["classify", "generate"])
    p.add_argument("--engine", choices=["torch", "ort", "genai"], required=True)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--ckpt")
    p.add_argument("--onnx")
    p.add_argument("--task", default="sentiment")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--adapter", default="")
    p.add_argument("--no-decode-graph", action="store_true",
                   help="fused graph: decode steps on int8 too (served: on int8-decode, NLPAPP_DECODE_GRAPH)")
    p.add_argument("--merged-decode", default="", help="fused graph + adapter: the adapter's merged decode graph")
    args = p.parse_args()
    res = classify(args) if args.kind == "classify" else generate(args)
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
