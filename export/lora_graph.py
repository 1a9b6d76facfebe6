"""Give an exported LM graph LoRA inputs, so one base graph serves every task's adapter, chosen per request.

For each projection an adapter may target (q/k/v/o, gate/up/down), the graph gets two float inputs,
A [n, in, r] and B [n, r, out], and computes y = x W + (x A) B. n is 1 (one adapter for the whole batch) or the
batch size (each sequence its own adapter: continuous batching mixes users of different tasks in one step).
The rank r is a free dimension per projection: an adapter of any rank fits (a batch pads ranks with zeros,
which is exact), and rank 0 (empty tensors) is the base model itself. The scale (alpha / r) is folded into B
when the adapter is read (runtime/adapters.py), so the graph needs no other input.

The patch works on tensor names, not on nodes: the int8 graph made by dynamic quantization keeps the names of
the fp32 graph's activations (the quantized MatMul group still reads `x` and writes the old output name), so
the same patch applies to every precision of the base export, and the base weights stay exactly those checked
against PyTorch. The LoRA path itself stays float: int4/int8 LoRA weights cost more than they save (small
MatMuls, measured by onnxruntime-genai's authors and by us on their runtime: 43-45 tok/s vs 68-86 float).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

LORA_FORMAT = 2  # bump when the patch changes: cached LoRA-ready exports are then rebuilt
# Linear layers of a Llama/Qwen2 decoder block that a LoRA adapter may target, as PEFT names them.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_PROJ = re.compile(r"^/model/layers\.(\d+)/(self_attn|mlp)/(" + "|".join(LORA_TARGETS) + r")/MatMul$")


@dataclass(frozen=True)
class LoraSlot:
    """One projection that can take a LoRA update: where its input comes from and where its output goes."""

    layer: int
    module: str  # "self_attn" or "mlp"
    proj: str
    x: str  # the projection's input activation
    y: str  # the projection's output (before any bias Add)
    d_in: int
    d_out: int

    @property
    def peft_key(self) -> str:
        """The module path PEFT uses in an adapter's safetensors keys."""
        return f"model.layers.{self.layer}.{self.module}.{self.proj}"

    @property
    def a_input(self) -> str:
        return f"lora_A.{self.peft_key}"

    @property
    def b_input(self) -> str:
        return f"lora_B.{self.peft_key}"


def find_slots(graph) -> list[LoraSlot]:
    """The LoRA-able projections of an fp32 LM graph exported by optimum (node names keep module paths)."""
    inits = {i.name: i for i in graph.initializer}
    slots = []
    for node in graph.node:
        m = _PROJ.match(node.name)
        if node.op_type != "MatMul" or not m or node.input[1] not in inits:
            continue
        d_in, d_out = (int(d) for d in inits[node.input[1]].dims)  # a Linear's weight, stored [in, out]
        slots.append(LoraSlot(int(m.group(1)), m.group(2), m.group(3), node.input[0], node.output[0], d_in, d_out))
    return slots


def add_lora_inputs(model, slots: list[LoraSlot]) -> None:
    """Patch `model` (an onnx ModelProto of any precision) in place: y -> y + (x A) B for every slot."""
    from onnx import TensorProto, helper

    graph = model.graph
    # The factors take the graph's float type: fp16 exports (CUDA) get fp16 factors.
    past = [i for i in graph.input if i.name.startswith("past_key_values.")]
    elem = past[0].type.tensor_type.elem_type if past else TensorProto.FLOAT
    produced = {o for n in graph.node for o in n.output}
    missing = [s.y for s in slots if s.y not in produced] + [s.x for s in slots if s.x not in produced]
    if missing:
        raise ValueError(f"graph lacks the projection tensors {missing[:3]}: not an optimum LM export")
    # the projection (or its int8 dequantizing Mul) now writes y_base; y becomes y_base + (x A) B
    renamed = {s.y: s.y + "_base" for s in slots}
    for node in graph.node:
        for k, o in enumerate(node.output):
            if o in renamed:
                node.output[k] = renamed[o]
    new_nodes = []
    for s in slots:
        r = f"r_{s.layer}_{s.proj}"  # a free rank per projection (adapters may use rank_pattern)
        graph.input.append(helper.make_tensor_value_info(s.a_input, elem, ["lora_batch", s.d_in, r]))
        graph.input.append(helper.make_tensor_value_info(s.b_input, elem, ["lora_batch", r, s.d_out]))
        base_out = renamed[s.y]
        prefix = f"/model/layers.{s.layer}/{s.module}/{s.proj}/lora"
        new_nodes += [
            helper.make_node("MatMul", [s.x, s.a_input], [prefix + "_xa"], name=prefix + "_A/MatMul"),
            helper.make_node("MatMul", [prefix + "_xa", s.b_input], [prefix + "_xab"], name=prefix + "_B/MatMul"),
            helper.make_node("Add", [base_out, prefix + "_xab"], [s.y], name=prefix + "/Add"),
        ]
    graph.node.extend(new_nodes)
    _toposort(graph)


def _toposort(graph) -> None:
    """ONNX wants nodes in topological order; the appended LoRA nodes belong before their consumers."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    nodes = list(graph.node)
    ordered, pending = [], nodes
    while pending:
        progress, rest = False, []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
                progress = True
            else:
                rest.append(n)
        if not progress:
            raise ValueError(f"graph has a cycle or an unknown input near node {rest[0].name!r}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def strip_lora(model) -> int:
    """Remove the LoRA nodes and inputs of a LoRA-ready `model` (in place): each projection writes its own output
    name again, and the graph is the base it was made from. Returns how many nodes went."""
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
    return len(lora)


def merge_lora(model, feeds: dict) -> int:
    """Fold an adapter into the float weights of a LoRA-ready `model` (in place): W += A B for each projection the
    adapter targets (its factors as runtime/adapters.py reads them, scale in B, one adapter: [1, in, r] and
    [1, r, out]), then strip the LoRA nodes. The result computes what the graph computed with those factors
    fed, without the 3 small nodes a projection that a step pays for (bench.lora_cost). Returns the projections
    changed."""
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {i.name: i for i in graph.initializer}
    merged = 0
    for add in [n for n in graph.node if "/lora" in n.name and n.op_type == "Add"]:
        b_node = producer[add.input[1]]  # (x A) B
        a_node = producer[b_node.input[0]]  # x A
        a, b = feeds[a_node.input[1]], feeds[b_node.input[1]]
        if a.shape[0] != 1 or b.shape[0] != 1:
            raise ValueError("merge_lora takes one adapter's factors, not a batch's")
        if a.shape[2] == 0:
            continue  # rank 0: this projection is not targeted
        proj = producer[add.input[0]]
        if proj.op_type != "MatMul" or proj.input[1] not in inits:
            raise ValueError(f"{proj.name} is not a float MatMul with its weight in the graph: merge into fp32")
        w = numpy_helper.to_array(inits[proj.input[1]])
        w = w + (a[0].astype(np.float64) @ b[0].astype(np.float64)).astype(w.dtype)
        inits[proj.input[1]].CopyFrom(numpy_helper.from_array(w, proj.input[1]))
        merged += 1
    strip_lora(model)
    return merged


def patch_export(src_dir: Path, dst_dir: Path, precisions: list[str]) -> list[LoraSlot]:
    """Write a LoRA-ready copy of every precision of the export in `src_dir` to `dst_dir` (same layout)."""
    import onnx

    fp32 = onnx.load(str(Path(src_dir) / "fp32" / "model.onnx"), load_external_data=False)
    slots = find_slots(fp32.graph)
    if not slots:
        raise ValueError(f"no LoRA-able projections found in {src_dir}")
    del fp32
    for precision in precisions:
        model = onnx.load(str(Path(src_dir) / precision / "model.onnx"))
        add_lora_inputs(model, slots)
        out = Path(dst_dir) / precision
        out.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(out / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                  location="model.onnx_data", size_threshold=1024)
    return slots


def export_lora_base(checkpoint: Path, out_root: Path, precisions: list[str] | None = None, force: bool = False):
    """The base `checkpoint` exported as usual (cached, checked), then made LoRA-ready and checked again with
    rank-0 factors against PyTorch (same rules: equal greedy tokens in fp32). Cached by the base export's key."""
    import shutil
    import time
    from dataclasses import asdict

    from transformers import AutoTokenizer

    from export.onnx_export import (ExportResult, Tolerance, _load_torch, _untie_lm_head, check_export,
                                    export_model, load_export, publish, quiet_export, staging_dir)
    from runtime.registry import ModelKind

    base = export_model(checkpoint, out_root, ModelKind.LM, precisions, force=force)
    out = Path(out_root) / f"lm-lora-{base.key}-f{LORA_FORMAT}"
    cached = load_export(out)
    if cached and not force:
        return cached
    t0 = time.time()
    tmp = staging_dir(out)
    slots = patch_export(base.path, tmp, base.precisions)
    for f in base.path.iterdir():  # tokenizer and config files
        if f.is_file() and f.name != "manifest.json":
            shutil.copy2(f, tmp / f.name)
    result = ExportResult(tmp, ModelKind.LM, base.key, base.precisions)
    tol = Tolerance()
    with quiet_export():
        model = _load_torch(checkpoint, ModelKind.LM)
        _untie_lm_head(model)
        result.checks = check_export(result, model, AutoTokenizer.from_pretrained(checkpoint), tol)
    manifest = {"kind": ModelKind.LM, "key": base.key, "precisions": base.precisions, "checks": result.checks,
                "checkpoint": str(checkpoint), "base_export": str(base.path), "lora_slots": len(slots),
                "lora_format": LORA_FORMAT, "tolerance": asdict(tol), "seconds": round(time.time() - t0, 1)}
    return publish(result, out, manifest)


def export_shared_base(checkpoint: Path, out_root: Path, graph: str = "optimum", precisions: list[str] | None = None,
                       force: bool = False):
    """The LoRA-ready base graph every adapter of this base runs on: "optimum" (this module) or "fused"
    (export/gqa_graph.py: fused attention, KV cache in place, CPU)."""
    if graph == "fused":
        from export.gqa_graph import export_gqa_base

        return export_gqa_base(checkpoint, out_root, [p for p in precisions or ["fp32", "int8"] if p != "fp16"],
                               force=force)
    return export_lora_base(checkpoint, out_root, precisions, force=force)
