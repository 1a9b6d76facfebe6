"""The base built by onnxruntime-genai's model builder (fused GroupQueryAttention with an in-place KV cache, fused
RMSNorm + residual, packed q/k/v), quantized our way, made LoRA-ready and checked against PyTorch.

Why this graph (BENCHMARKS.md, Qwen 0.5B on 2 cores): the optimum export concatenates the whole KV cache and
expands the grouped K/V heads every step; this one writes each new key/value in place. Quantization, measured
on the same graph in our decode loop (256-token prompt; TTFT, decode tok/s batch 1 / batch 8):
- builder int4 (MatMulNBits everywhere, accuracy level 4): 1,497 ms, 37.5, 129 (prefill is slow in 4-bit here)
- our dynamic int8 (MatMulInteger), down_proj kept fp32 as in the optimum export: 502 ms, 27.3, 139
- the same, down_proj 4-bit (MatMulNBits, block 32, accuracy level 4): 608 ms, 44.4, 176 (served until GQA_FORMAT 2)
(the optimum export, int8: 605 ms, 23.2, 79; onnxruntime-genai's own runtime, int4: 1,376 ms, 47.6, 130).
Then (2026-12-05, 5 repeats a run, runs interleaved: this machine's timings drift by 10-20% between runs), with the
lm_head computing the last position only in a prefill (keep_last_logits; TTFT 646 -> 540-575 ms):
- down_proj 4-bit in blocks of 128: ~490 ms, 45, ~190 (down_proj's MatMuls over 256 positions cost 5.7 ms a
  layer instead of 8.3 at block 32; dynamic int8 would be 2.7)
- that, and the lm_head 4-bit too (block 32): ~400-490 ms, 49, ~160  <- served "int8" (GQA_FORMAT 2)
- both in blocks of 128: ~400-480 ms, 50, ~175, but generation perplexity 48.4 where the served one has 47.0
Then (2026-12-05, later; run_slots with rank-0 factors, 256-token prompt, two interleaved runs of 4 repeats):
- served int8 (above): TTFT 393-395 ms, decode 44.5-46.9 tok/s batch 1, 202-215 batch 8
- gate_proj and up_proj 4-bit too (block 128): 556-582 ms, 55.9-59.0, 206-208
- every projection 4-bit, block 32 (onnxruntime-genai's recipe): 846-893 ms, 52.7-55.5, 155-164
so prompts stay on int8 and one-token steps run on the second ("int8-decode", NBITS_DECODE), over the same cache.
A decode step reads the lm_head's 136 M weights in 4 bits instead of 8. Against fp32 on validation (120 rows):
perplexity of the generate adapter's continuations 47.0 vs 42.8 (the block-32 down_proj with an int8 lm_head:
45.0; block 128 with it: 46.1), translate chrF 55.68 vs 56.19, summarize ROUGE-L 0.409 vs 0.403.
down_proj stays out of per-channel int8 because outlier activations feeding it cost accuracy (onnx_export.
quantize_int8); 4-bit blocks carry their own scales and hold up on Qwen 0.5B (the export check and the task
metrics). They do not on SmolLM2-135M (int8 logit cosine 0.898, argmax agreement 46% with down_proj alone at
block 32): when the int8 check refuses the 4-bit weights, the int8 graph is rebuilt with down_proj in fp32 and the
lm_head in int8, the optimum export's rule, and checked again (SmolLM2: cosine 0.977, agreement 77%; the
manifest's int8_down_proj and int8_lm_head say which one a build serves).

The builder needs transformers >= 5 (the stack pins 4.57 for optimum), so it runs in a child process with a
pip --target folder of its own first on PYTHONPATH (models/tools/genai-builder, installed on first use).
LoRA inputs are added by export/lora_graph.py's patch; the packed q/k/v projection gets one input pair whose
factors runtime/adapters.py assembles from PEFT's q_proj / k_proj / v_proj (block-diagonal B).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from export.lora_graph import LoraSlot, add_lora_inputs
from runtime.gqa import DECODE_SUFFIX
from runtime.lm import KEEP_INPUT

log = logging.getLogger(__name__)

# bump when the build or the patch changes: cached exports are then rebuilt (2: logits_to_keep; 3: int8-decode;
# 4: q/k/v and o 4-bit in int8-decode)
GQA_FORMAT = 4
GENAI = "onnxruntime-genai==0.18.0"
# transformers 5 wants a newer hub and tokenizers than the stack pins; they only ever load in the builder's process
BUILDER_PACKAGES = (GENAI, "transformers==5.24.0", "huggingface-hub==1.31.0", "tokenizers==0.23.1")
# 4-bit MatMuls (symmetric, accuracy level 4) and their block sizes; the module docstring says why
NBITS = {"/down_proj/": dict(block_size=128, accuracy_level=4), "/lm_head/": dict(block_size=32, accuracy_level=4)}
# The decode graph ("int8-decode", DECODE_SUFFIX): every projection 4-bit (the MLP's gate and up are the largest
# weights a decode step reads). A prefill on it would be ~45% slower, so prompts stay on int8 and only one-token
# steps use this one (runtime/gqa.py, NLPAPP_DECODE_GRAPH). Translation lost 1.2 chrF on validation with gate/up
# 4-bit (blocks of 32: 0.6; up alone: 0.4) and keeps its steps on int8; summarize, qa and generate did not lose
# (BENCHMARKS.md). q/k/v and o went 4-bit too in GQA_FORMAT 4: as int8 each was five nodes a step (dynamic
# quantize, scale Mul, MatMulInteger, Cast, Mul), as MatMulNBits one; decode batch 1 +15% bare, +11% with an
# adapter, interleaved in one process; summarize validation ROUGE-L 0.3987 -> 0.3937 (120 rows), qa's answers
# unchanged (BENCHMARKS.md, 2026-12-05 23:30 UTC).
NBITS_DECODE = {**{f"/{proj}/": dict(block_size=128, accuracy_level=4)
                   for proj in ("qkv_proj", "o_proj", "gate_proj", "up_proj")}, **NBITS}
_PROJ = re.compile(r"^/model/layers\.(\d+)/(attn|mlp)/(qkv_proj|o_proj|gate_proj|up_proj|down_proj)/MatMul(?:_Q4)?$")


def tools_dir() -> Path:
    """Build tools installed on first use (git-ignored): NLPAPP_TOOLS_DIR, else models/tools in the checkout."""
    return Path(os.environ.get("NLPAPP_TOOLS_DIR", Path(__file__).resolve().parent.parent / "models" / "tools"))


def pip_target(folder: Path, packages: tuple[str, ...]) -> Path:
    """`packages` installed (no dependencies) into `folder`, once; for a child process's PYTHONPATH."""
    stamp = folder / ".installed"
    want = " ".join(packages)
    if stamp.exists() and stamp.read_text() == want:
        return folder
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--upgrade", "--target", str(folder), *packages], check=True)
    stamp.write_text(want)
    return folder


def run_builder(checkpoint: Path, out: Path, tools: Path, log: Path, precision: str = "fp32") -> None:
    """onnxruntime-genai's model builder on the Hugging Face folder `checkpoint`, for CPU, into `out`."""
    builder = pip_target(tools / "genai-builder", BUILDER_PACKAGES)
    env = {**os.environ, "PYTHONPATH": str(builder)}
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(checkpoint),
                               "-o", str(out), "-p", precision, "-e", "cpu",
                               "-c", str(tools / "genai-cache")], env=env, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode or not (out / "model.onnx").exists():
        raise RuntimeError(f"onnxruntime-genai's model builder failed for {checkpoint}: see {log}")


def find_gqa_slots(graph) -> list[LoraSlot]:
    """The LoRA-able projections of a builder graph; the fp32 MatMul's weight is [in, out], MatMulNBits says K, N."""
    from onnx import helper

    inits = {i.name: i for i in graph.initializer}
    slots = []
    for node in graph.node:
        m = _PROJ.match(node.name)
        if not m:
            continue
        if node.op_type == "MatMul" and node.input[1] in inits:
            d_in, d_out = (int(d) for d in inits[node.input[1]].dims)
        elif node.op_type == "MatMulNBits":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            d_in, d_out = int(attrs["K"]), int(attrs["N"])
        else:
            continue
        module = "self_attn" if m.group(2) == "attn" else "mlp"  # PEFT's module names
        slots.append(LoraSlot(int(m.group(1)), module, m.group(3), node.input[0], node.output[0], d_in, d_out))
    return slots


def _static_head_dim(model, head_dim: int) -> None:
    """The builder leaves the cache's last dimension symbolic; give it its value (the runtime sizes buffers by it)."""
    for v in list(model.graph.input) + list(model.graph.output):
        if v.name.startswith(("past_key_values.", "present.")):
            v.type.tensor_type.shape.dim[3].dim_value = head_dim


def keep_last_logits(model) -> None:
    """A `logits_to_keep` input [1] (int64): the lm_head sees only each row's last k positions (0: all of them).

    A prefill needs the last position's logits alone, and the lm_head over a 256-token prompt is a 896 x 151,936
    MatMul per position plus a 155 MB output (Qwen 0.5B: TTFT 530 -> 445 ms on 2 cores). Scoring passes 0."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    head = [n for n in graph.node if n.name.startswith("/lm_head/") and n.op_type == "MatMul"]
    if len(head) != 1:
        raise ValueError(f"expected one /lm_head/ MatMul in the builder's graph, found {len(head)}")
    hidden = head[0].input[0]
    kept = f"{hidden}_kept"
    graph.input.append(helper.make_tensor_value_info(KEEP_INPUT, TensorProto.INT64, [1]))
    graph.initializer.extend([numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), "/lm_head/keep_end"),
                              numpy_helper.from_array(np.array([1], np.int64), "/lm_head/keep_axis")])
    at = list(graph.node).index(head[0])
    graph.node.insert(at, helper.make_node("Slice", [hidden, "/lm_head/keep_start", "/lm_head/keep_end",
                                                     "/lm_head/keep_axis"], [kept], name="/lm_head/Keep"))
    graph.node.insert(at, helper.make_node("Neg", [KEEP_INPUT], ["/lm_head/keep_start"], name="/lm_head/KeepStart"))
    head[0].input[0] = kept
    for out in graph.output:
        if out.name == "logits":
            out.type.tensor_type.shape.dim[1].dim_param = "kept_length"


def quantize_mixed(model, nbits: dict = NBITS, symmetric: bool = True):
    """The served weights: down_proj and lm_head 4-bit (MatMulNBits, NBITS; NBITS_DECODE for the decode graph),
    every other MatMul dynamic int8 (MatMulInteger, by quantize_dynamic afterwards). symmetric=False: each block
    gets a zero point too (export/merged_decode.py says why)."""
    import logging

    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    for pattern, blocks in nbits.items():
        others = [n.name for n in model.graph.node if n.op_type == "MatMul" and pattern not in n.name]
        cfg = DefaultWeightOnlyQuantConfig(is_symmetric=symmetric, **blocks)
        q = MatMulNBitsQuantizer(model, is_symmetric=symmetric, nodes_to_exclude=others, algo_config=cfg, **blocks)
        q.process()
        model = q.model.model
    return model


def _save(model, folder: Path) -> Path:
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx_data", size_threshold=1024)
    return folder / "model.onnx"


def quantize_int8(fp32: Path, work: Path, nbits: dict, down_proj: str = "4bit", symmetric: bool = True):
    """The fp32 graph at `fp32` quantized our way: the `nbits` MatMuls 4-bit, the others dynamic int8 (down_proj
    "fp32": no 4-bit at all and down_proj left in fp32). Returns the loaded model; `work` holds scratch files."""
    import onnx

    from export.onnx_export import quantize_int8 as dynamic_int8

    four_bit = down_proj == "4bit"
    dynamic_int8(fp32, work / "int8.onnx", ("MatMul",), () if four_bit else ("/down_proj/",), external_data=True,
                 nbits=nbits if four_bit else None, symmetric=symmetric)
    return onnx.load(str(work / "int8.onnx"))


def build(checkpoint: Path, dst: Path, precisions: list[str], tools: Path, down_proj: str = "4bit") -> int:
    """The base in each precision, LoRA-ready, into dst/<precision>/ (model.onnx, its data, genai_config.json);
    int8's down_proj and lm_head are 4-bit ("4bit"), or down_proj is left in fp32 and lm_head int8 ("fp32");
    int8-decode has every projection 4-bit (NBITS_DECODE)."""
    import onnx

    raw = dst / "raw"
    run_builder(checkpoint, raw, tools, dst / "build.log")
    config = json.loads((raw / "genai_config.json").read_text())
    model = onnx.load(str(raw / "model.onnx"))
    _static_head_dim(model, int(config["model"]["decoder"]["head_size"]))
    keep_last_logits(model)
    slots = find_gqa_slots(model.graph)  # by tensor names: the quantized graphs keep them (lora_graph's docstring)
    if not slots:
        raise ValueError(f"no LoRA-able projections in the builder's graph of {checkpoint}")
    fp32 = _save(model, raw / "fp32")  # (saving moves the weights out of `model`: each precision loads its own)
    del model
    for f in raw.glob("model.onnx*"):  # the builder's copy: 2.4 GB for Qwen 0.5B (disk peaks at ~3 copies)
        f.unlink()
    for precision in precisions:
        if precision == "fp32":
            out = onnx.load(str(fp32))
        elif precision in ("int8", "int8" + DECODE_SUFFIX):
            out = quantize_int8(fp32, raw, NBITS if precision == "int8" else NBITS_DECODE, down_proj)
        else:
            raise ValueError(f"the fused-attention base has no {precision} build (fp32, int8, int8-decode)")
        add_lora_inputs(out, slots)
        _save(out, dst / precision)
        shutil.copy2(raw / "genai_config.json", dst / precision / "genai_config.json")  # marks the graph
    shutil.rmtree(raw)
    return len(slots)


def export_gqa_base(checkpoint: Path, out_root: Path, precisions: list[str] | None = None, force: bool = False):
    """The base `checkpoint` built with fused attention, LoRA-ready, checked with rank-0 factors against PyTorch
    (fp32: equal greedy tokens; int8: the logit-cosine rule of every quantized export). Cached by checkpoint and
    format."""
    import time
    from dataclasses import asdict

    from transformers import AutoTokenizer

    from export.onnx_export import (ExportRefused, ExportResult, Tolerance, _load_torch, _untie_lm_head,
                                    check_export, export_key, load_export, publish, quiet_export, staging_dir)
    from runtime.registry import ModelKind

    precisions = list(precisions or ["fp32", "int8"])
    decode = "int8" + DECODE_SUFFIX
    if "int8" in precisions and decode not in precisions:
        precisions.append(decode)  # int8's companion for one-token steps (runtime/gqa.py)
    key = export_key(checkpoint, f"lm-gqa-f{GQA_FORMAT}", precisions)
    out = Path(out_root) / f"lm-gqa-{key}"
    cached = load_export(out)
    if cached and not force:
        return cached
    t0 = time.time()
    tmp = staging_dir(out)
    slots = build(Path(checkpoint), tmp, precisions, tools_dir())
    _copy_tokenizer(checkpoint, tmp)
    result = ExportResult(tmp, ModelKind.LM, key, precisions)
    tol = Tolerance()
    down_proj = "4bit" if "int8" in precisions else "n/a"
    with quiet_export():
        model = _load_torch(checkpoint, ModelKind.LM)
        _untie_lm_head(model)
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        for _ in range(3):  # at most: the decode graph dropped, int8 rebuilt
            try:
                result.checks = check_export(result, model, tokenizer, tol)
                break
            except ExportRefused as refused:
                refused_precision = str(refused).split(" export")[0].split()[-1]  # "lm int8 export differs ..."
                if down_proj != "4bit" or refused_precision not in ("int8", decode):
                    raise
                if decode in result.precisions:  # more 4-bit than int8 itself: it goes whichever was refused
                    log.warning("the %s graph is not served: %s", decode, refused)
                    shutil.rmtree(tmp / decode)
                    result.precisions.remove(decode)
                if refused_precision == "int8":
                    log.warning("int8 with a 4-bit down_proj and lm_head refused (%s); rebuilding int8 with "
                                "down_proj in fp32 and the lm_head in int8", refused)
                    shutil.rmtree(tmp / "int8")
                    build(Path(checkpoint), tmp, ["int8"], tools_dir(), down_proj="fp32")
                    down_proj = "fp32"
        else:
            raise RuntimeError(f"the fused-attention export of {checkpoint} kept failing its checks")
    manifest = {"kind": ModelKind.LM, "key": key, "precisions": result.precisions, "checks": result.checks,
                "checkpoint": str(checkpoint), "graph": "gqa", "gqa_format": GQA_FORMAT, "lora_slots": slots,
                "int8_down_proj": down_proj, "int8_lm_head": {"4bit": "4bit", "fp32": "int8"}.get(down_proj, "n/a"),
                "nbits": NBITS if down_proj == "4bit" else None,
                "decode_graph": {"int8": decode, "nbits": NBITS_DECODE} if decode in result.precisions else None,
                "builder": BUILDER_PACKAGES[0], "tolerance": asdict(tol), "seconds": round(time.time() - t0, 1)}
    return publish(result, out, manifest)


def _copy_tokenizer(checkpoint: Path, dst: Path) -> None:
    for f in Path(checkpoint).iterdir():  # tokenizer and config files (the app loads the tokenizer from here)
        if f.is_file() and f.suffix in (".json", ".txt", ".jinja", ".model") and f.name != "manifest.json":
            shutil.copy2(f, dst / f.name)
