"""A task's adapter folded into a decode graph of its own (NLPAPP_MERGED_DECODE), checked against the run-time adapter.

The shared base graph applies an adapter through 120 LoRA slots of 3 small nodes each, run every step whatever
the rank: 1.2-2.9 ms of a ~15 ms batch-1 decode step on Qwen 0.5B (bench.lora_cost). Here the adapter's factors
are added to the fp32 weights (W + A B), the LoRA nodes removed, and the result quantized with the recipe of the
base's int8-decode graph (its 4-bit blocks with zero points: SYMMETRIC): the same formats, the base's speed.
It costs a session per task (~0.36 GB of memory), holds one adapter version (a new version decodes on the shared
graph until its own is built), and serves steps whose rows all belong to that task: chosen by config, per task.
Prompts still prefill on the shared int8 graph, into the same slot cache (runtime/gqa.py).
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from runtime.gqa import MERGED_FORMAT, merged_decode_graph, merged_dir

log = logging.getLogger(__name__)

# The 4-bit blocks of a merged graph get a zero point each (asymmetric), where the base's decode graph has none.
# Symmetric rounding of W + A B kept less of the adapter than the run-time path, which adds A B in float: on
# summarize's validation (235 rows) ROUGE-L 0.3886 merged symmetric, 0.3992 asymmetric, 0.4066 run-time; logit
# cosine to fp32 0.967, 0.988, 0.979. Asymmetric blocks decoded no slower (12.41 ms a step vs 13.53 symmetric).
SYMMETRIC = False
CHECK_PROMPTS = ("Write a short poem about the sea.", "Summarize: the council approved the new budget on Tuesday.",
                 "What is the capital of France?")
CHECK_STEPS = 8


class _GraphInputs:
    """What runtime.adapters.read_adapter asks of a session (its inputs), answered from an onnx graph."""

    def __init__(self, graph):
        from types import SimpleNamespace

        elem = {1: "tensor(float)", 10: "tensor(float16)"}
        self._inputs = [SimpleNamespace(name=i.name, type=elem.get(i.type.tensor_type.elem_type, "other"),
                                        shape=[d.dim_value if d.HasField("dim_value") else d.dim_param
                                               for d in i.type.tensor_type.shape.dim]) for i in graph.input]

    def get_inputs(self):
        return self._inputs


def build_merged_decode(export_path: Path, adapter: Path, version: str, models_dir: Path, force: bool = False,
                        min_cosine: float | None = None) -> Path:
    """Fold `adapter` into the fp32 graph of the fused export at `export_path`, quantize it as that export's
    decode graph (4-bit blocks with zero points), check it against the fp32 graph fed the adapter (check_merged),
    and keep it (cached by version and export). Refuses an export without a decode graph or an fp32 graph, and a
    merge the check refuses (its record is kept)."""
    import onnx

    from export.gqa_graph import _save, quantize_int8
    from export.lora_graph import merge_lora
    from runtime.adapters import read_adapter

    export_path, out = Path(export_path), merged_dir(models_dir, version)
    cached = merged_decode_graph(models_dir, version, export_path)
    if cached and not force:
        return cached
    manifest = json.loads((export_path / "manifest.json").read_text())
    decode = manifest.get("decode_graph")
    if manifest.get("graph") != "gqa" or not decode or "fp32" not in manifest["precisions"]:
        raise ValueError(f"{export_path} has no decode graph or no fp32 graph to merge into")
    t0 = time.time()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = onnx.load(str(export_path / "fp32" / "model.onnx"))
    lora = read_adapter(adapter, _GraphInputs(model.graph), version)
    merged = merge_lora(model, lora.feeds)
    fp32 = _save(model, tmp / "fp32")
    del model
    quantized = quantize_int8(fp32, tmp, decode["nbits"], symmetric=SYMMETRIC)
    _save(quantized, tmp)  # model.onnx and its data, beside quantize_int8's scratch files (removed below)
    del quantized
    shutil.rmtree(tmp / "fp32")
    for f in tmp.glob("int8.onnx*"):
        f.unlink()
    shutil.copy2(export_path / decode["int8"] / "genai_config.json", tmp / "genai_config.json")
    check = check_merged(export_path, decode["int8"], tmp / "model.onnx", adapter, version, min_cosine)
    record = {"format": MERGED_FORMAT, "version": version, "adapter": str(adapter), "export": export_path.name,
              "recipe": {**decode, "symmetric": SYMMETRIC}, "projections_merged": merged, "check": check,
              "seconds": round(time.time() - t0, 1)}
    (tmp / "manifest.json").write_text(json.dumps(record, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    if not check["passed"]:  # kept as a record (so a start does not try again), without the graph
        out.mkdir(parents=True)
        shutil.move(tmp / "manifest.json", out / "manifest.json")
        shutil.rmtree(tmp)
        raise ValueError(f"the merged decode graph of {version} differs from its run-time adapter: {check}")
    tmp.rename(out)
    log.info("merged decode graph of %s: %d projections, check %s, %.0f s", version, merged, check,
             time.time() - t0)
    return out / "model.onnx"


def check_merged(export_path: Path, decode_precision: str, merged: Path, adapter: Path, version: str,
                 min_cosine: float | None = None) -> dict:
    """Decode steps on the merged graph against the fp32 graph fed the adapter (the truth), from the same prompt
    and the same tokens (fp32's greedy ones): mean logit cosine, held to the int8 rule of every quantized export,
    and how often the greedy token agrees; the same figures for the export's own decode graph fed the adapter
    (what the task decodes on without the merge), beside them."""
    from export.onnx_export import Tolerance
    from runtime.adapters import LoraFeeds, read_adapter
    from runtime.gqa import GqaCausalLM
    from runtime.tokenizer import FastTokenizer

    min_cosine = Tolerance().int8_min_cosine if min_cosine is None else min_cosine
    tokenizer = FastTokenizer(export_path)
    truth = GqaCausalLM(export_path / "fp32" / "model.onnx", tokenizer, "fp32", "cpu", slots=1, max_len=256)
    base = GqaCausalLM(export_path / "int8" / "model.onnx", tokenizer, "int8", "cpu", slots=2, max_len=256,
                       decode_graph=True)
    if base.decode_session is None:
        raise ValueError(f"{export_path} has no {decode_precision} graph")
    truth = truth.with_adapter(read_adapter(adapter, truth.session, version))
    lora = read_adapter(adapter, base.session, version)
    merged_path = base.with_adapter(lora)
    merged_path.add_merged_decode(lora, merged)
    runtime_path = base.with_adapter(LoraFeeds(lora.name, dict(lora.feeds)))  # another dict: never the merged one
    cosines: dict[str, list[float]] = {"merged": [], "run-time adapter": []}
    agree = {k: 0 for k in cosines}
    for prompt in CHECK_PROMPTS:
        ids = np.asarray([tokenizer(prompt).input_ids], np.int64)
        n = ids.shape[1]
        truth.run_slots(0, ids, [n])
        merged_path.run_slots(0, ids, [n])
        runtime_path.run_slots(1, ids, [n])
        token = int(ids[0, -1])
        for step in range(CHECK_STEPS):
            step_ids, length = np.asarray([[token]], np.int64), [n + step + 1]
            want = truth.run_slots(0, step_ids, length)[0, -1]
            for name, view, slot in (("merged", merged_path, 0), ("run-time adapter", runtime_path, 1)):
                got = view.run_slots(slot, step_ids, length)[0, -1]
                cosines[name].append(float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want) + 1e-12)))
                agree[name] += int(got.argmax() == want.argmax())
            token = int(want.argmax())
    steps = len(cosines["merged"])
    figures = {name: {"mean_logit_cosine": round(float(np.mean(c)), 4),
                      "greedy_agreement": round(agree[name] / steps, 3)} for name, c in cosines.items()}
    return {"against": "fp32 graph with the adapter", **figures, "steps": steps, "min_cosine": min_cosine,
            "passed": figures["merged"]["mean_logit_cosine"] >= min_cosine}
