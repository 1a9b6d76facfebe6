"""Export a checkpoint to ONNX (optimum), prove it against PyTorch, quantize per target, cache by input key."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from export.base_model import save_tokenizer
from runtime.lm import KEEP_INPUT
from runtime.registry import ModelKind

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the export recipe changes: old caches are then rebuilt
CLASSIFIER_FORMAT = 4  # bump when only the classifier's recipe changes (2: its embedding in int8, 3: its score head
# in fp32, 4: its down_proj 4-bit); LM keys stay
KINDS = {ModelKind.LM: "text-generation-with-past", ModelKind.CLASSIFIER: "text-classification"}  # optimum tasks
# The ops whose weights int8 stores. A classifier's token embedding too: on Qwen it is 151,936 x 896, 545 MB in fp32
# and 136 MB in int8 (the finnews export: 1.2 GB -> 773 MB), and a lookup, not a product, so it loses nothing
# measurable (finnews validation macro-F1 0.7563 against 0.7560; 95.7% of answers equal fp32's against 94.7%)
INT8_OPS = {ModelKind.LM: ("MatMul",), ModelKind.CLASSIFIER: ("MatMul", "Gather")}
# MatMuls kept in fp32, by a part of their node name. down_proj: see quantize_int8. A classifier's score head
# (hidden size x 2 or 3 labels, a few KB) writes the logits themselves, so int8 there (its input, the last hidden
# state, quantized per tensor on the fly) adds its error straight to them and saves nothing. Validation
# (python -m bench.quant), head int8 -> fp32: sentiment accuracy 0.860 -> 0.8725 (fp32 export 0.871), answers equal
# to fp32's 98.1% -> 98.9%; financial news macro-F1 0.756 -> 0.762 (fp32 0.747), equal 95.7% -> 97.0%
FP32_MATMULS = {ModelKind.LM: ("down_proj",), ModelKind.CLASSIFIER: ("/score/",)}
# MatMuls made weight-only (MatMulNBits, asymmetric blocks) before the rest goes int8. A classifier's down_proj: in
# fp32 it was 418 of the 773 MB of a Qwen 0.5B classifier; 4-bit in blocks of 32 at accuracy level 4 (its input, the
# MLP's outlier activations, quantized per block of 32 rather than per tensor) makes the export 438 MB at the same
# speed and score on validation (python -m bench.quant, 2026-12-06; sentiment: accuracy 0.8712 -> 0.8738, texts/s at
# batch 32 8.32 -> 8.17 on a slow hour, answers equal to fp32's 98.75% -> 98.5%; 8-bit blocks were 25% slower).
# The optimum LM export (CUDA hosts) keeps its down_proj fp32.
NBITS_MATMULS = {ModelKind.LM: None,
                 ModelKind.CLASSIFIER: {"/down_proj/": dict(bits=4, block_size=32, accuracy_level=4)}}
SAMPLE_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Where is my order? I paid on Monday and nothing has arrived.",
    "Shares of the bank fell 4% after the profit warning.",
]


@dataclass(frozen=True)
class Tolerance:
    """Stated tolerances: a precision whose outputs differ more than this is not registered."""

    fp32_logits_atol: float = 1e-2  # absolute, on raw logits (measured ~1e-3 on SmolLM2)
    fp16_logits_atol: float = 0.5
    int8_min_cosine: float = 0.95  # mean cosine similarity of int8 vs PyTorch logit vectors
    greedy_tokens: int = 8  # KV-cache greedy decode must equal PyTorch greedy for this many tokens (fp32)


class ExportRefused(RuntimeError):
    """Raised when an exported model fails its check against PyTorch."""


@dataclass
class ExportResult:
    path: Path
    kind: str
    key: str
    precisions: list[str]
    checks: dict = field(default_factory=dict)

    def onnx(self, precision: str) -> Path:
        return self.path / precision / "model.onnx"


def _versions() -> dict:
    import onnx
    import onnxruntime
    import optimum
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "optimum": getattr(optimum, "__version__", "?")}


def fingerprint(folder: Path) -> str:
    """Content hash of a checkpoint folder, cached beside it by (size, mtime) so restarts skip re-hashing."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix in {".json", ".safetensors", ".jinja"})
    stat_key = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    side = folder / ".fingerprint.json"
    try:
        cached = json.loads(side.read_text())
        if cached["stat"] == stat_key:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    digest = h.hexdigest()
    try:
        side.write_text(json.dumps({"stat": stat_key, "sha256": digest}))
    except OSError:
        pass
    return digest


def export_key(checkpoint: Path, kind: str, precisions: list[str]) -> str:
    payload = json.dumps({"ckpt": fingerprint(checkpoint), "kind": kind, "precisions": sorted(precisions),
                          "format": FORMAT_VERSION, "versions": _versions()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_export(path: Path) -> ExportResult | None:
    try:
        m = json.loads((Path(path) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return ExportResult(Path(path), m["kind"], m["key"], m["precisions"], m.get("checks", {}))


def _load_torch(checkpoint: Path, kind: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    cls = AutoModelForCausalLM if kind == ModelKind.LM else AutoModelForSequenceClassification
    model = cls.from_pretrained(checkpoint, dtype=torch.float32)
    model.eval()
    return model


def _untie_lm_head(model) -> None:
    """Give lm_head its own copy of the embedding: the tied graph transposes the embedding per token and
    quantizers skip that MatMul, leaving ~113 MB of fp32 read per token (measured on SmolLM2-135M)."""
    import torch

    if getattr(model.config, "tie_word_embeddings", False):
        emb = model.get_input_embeddings().weight
        model.lm_head.weight = torch.nn.Parameter(emb.detach().clone())
        model.config.tie_word_embeddings = False


def quantize_int8(src: Path, dst: Path, ops: tuple[str, ...] = ("MatMul",),
                  keep_fp32: tuple[str, ...] = FP32_MATMULS[ModelKind.LM], reduce_range: bool = True,
                  external_data: bool = False, nbits: dict | None = None, symmetric: bool = False) -> None:
    """Dynamic int8 weights of `ops` (MatMul; a classifier's embedding Gather too): per-channel, reduce_range
    (7-bit weights: no saturation on CPUs without VNNI), MatMuls named with a part of `keep_fp32` (MLP down_proj,
    a classifier's score head) left in fp32. external_data: the weights in a file beside dst (a graph over 2 GB).
    nbits: MatMuls named with a part of a key are first made weight-only MatMulNBits with that key's options
    (export.gqa_graph.quantize_mixed: bits, block_size, accuracy_level), whatever `keep_fp32` says of them; their
    blocks without zero points if `symmetric`.

    Measured on SmolLM2 (next-token argmax agreement with PyTorch over the sample texts): per-tensor on all
    MatMuls 36% (cosine 0.86), per-channel+reduce_range on all 54%, with down_proj kept fp32 79% (cosine 0.98).
    Outlier activations into down_proj are the usual culprit in Llama-style models (the classifier showed it too:
    int8 on every MatMul cost it 6 points of accuracy, down_proj kept fp32 0.4).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        if nbits:
            from export.gqa_graph import _save, quantize_mixed

            src = _save(quantize_mixed(onnx.load(str(src)), nbits, symmetric), Path(tmp))
        graph = onnx.load(str(src), load_external_data=False).graph
        exclude = [n.name for n in graph.node if n.op_type == "MatMul" and any(k in n.name for k in keep_fp32)]
        quantize_dynamic(src, dst, op_types_to_quantize=list(ops), per_channel=True, reduce_range=reduce_range,
                         weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                         use_external_data_format=external_data)


def _sample_batch(tokenizer):
    enc = [tokenizer(t).input_ids for t in SAMPLE_TEXTS]
    return enc


def _ort_full_logits(session, ids: list[int], kind: str, lora=None) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    n = len(ids)
    feeds = {"input_ids": np.asarray([ids], np.int64), "attention_mask": np.ones((1, n), np.int64),
             **(lora.feeds if lora is not None else {})}
    if "position_ids" in names:
        feeds["position_ids"] = np.arange(n, dtype=np.int64)[None, :]
    if KEEP_INPUT in names:
        feeds[KEEP_INPUT] = np.zeros(1, np.int64)  # every position
    for i in session.get_inputs():
        if i.name.startswith("past_key_values."):
            dt = np.float16 if i.type == "tensor(float16)" else np.float32
            feeds[i.name] = np.zeros((1, i.shape[1], 0, i.shape[3]), dt)
    out = session.run(None, feeds)[0]
    return out[0].astype(np.float32)  # lm: (seq, vocab); classifier: (labels,)


def check_export(result: ExportResult, model, tokenizer, tol: Tolerance, adapter: Path | None = None) -> dict:
    """Compare every exported precision with PyTorch on sample inputs; raise ExportRefused if beyond tol.
    A LoRA-ready export is checked with `adapter`'s factors as inputs (`model` is then the PEFT model), or
    with rank-0 factors (the base)."""
    import torch

    from runtime.adapters import lora_inputs, no_adapter, read_adapter
    from runtime.lm import OnnxCausalLM, Sampling
    from runtime.providers import open_session

    def lora_for(session):
        if not lora_inputs(session):
            return None
        return read_adapter(adapter, session) if adapter is not None else no_adapter(session)

    checks: dict = {}
    samples = _sample_batch(tokenizer)
    with torch.no_grad():
        ref = [model(torch.tensor([ids])).logits[0].float().numpy() for ids in samples]
    for precision in result.precisions:
        sess, placement = open_session(result.onnx(precision), precision, "auto" if precision == "fp16" else "cpu")
        lora = lora_for(sess)
        got = [_ort_full_logits(sess, ids, result.kind, lora) for ids in samples]
        diff = max(float(np.abs(g - r).max()) for g, r in zip(got, ref))
        cos = float(np.mean(np.concatenate([
            np.atleast_1d(np.sum(g * r, -1) / (np.linalg.norm(g, axis=-1) * np.linalg.norm(r, axis=-1) + 1e-12))
            for g, r in zip(got, ref)])))
        agree = float(np.mean(np.concatenate([
            (np.argmax(g, -1) == np.argmax(r, -1)).reshape(-1) for g, r in zip(got, ref)])))
        c = {"max_abs_logit_diff": diff, "mean_cosine": cos, "argmax_agreement": agree,
             "provider": placement.provider}
        if precision == "fp32":
            ok = diff <= tol.fp32_logits_atol
            c["rule"] = f"max |logit diff| <= {tol.fp32_logits_atol}"
            if ok and result.kind == ModelKind.LM:
                lm = OnnxCausalLM(result.onnx(precision), tokenizer, precision, "cpu")
                if lora is not None:  # the same graph as `sess`: the same factors fit
                    lm = lm.with_adapter(lora)
                greedy_ok = True
                for ids in samples:
                    ort_ids = lm.generate(ids, Sampling(max_new_tokens=tol.greedy_tokens))
                    with torch.no_grad():
                        pt = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                            max_new_tokens=tol.greedy_tokens, do_sample=False,
                                            eos_token_id=sorted(lm.stop_ids), pad_token_id=tokenizer.pad_token_id)
                    pt_ids = pt[0, len(ids):].tolist()
                    for k, t in enumerate(pt_ids):  # generate pads after a stop token; cut there
                        if t in lm.stop_ids:
                            pt_ids = pt_ids[:k]
                            break
                    greedy_ok &= ort_ids == pt_ids
                c["kv_cache_greedy_equal"] = greedy_ok
                c["rule"] += f"; KV-cache greedy == PyTorch greedy for {tol.greedy_tokens} tokens"
                ok = ok and greedy_ok
        elif precision == "fp16":
            ok = diff <= tol.fp16_logits_atol
            c["rule"] = f"max |logit diff| <= {tol.fp16_logits_atol}"
        else:
            ok = cos >= tol.int8_min_cosine
            c["rule"] = f"mean cosine of logits >= {tol.int8_min_cosine}"
        c["passed"] = bool(ok)
        checks[precision] = c
        log.info("check %s %s: %s", result.kind, precision, _check_line(c))
        if not ok:
            raise ExportRefused(f"{result.kind} {precision} export differs from PyTorch: {c}")
    return checks


class _OnlyErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextmanager
def quiet_export():
    """Keep the first-run log to one line per step: the tracer's warnings (Python conditions frozen into the
    graph), torch.onnx's opset notes and the quantizer's pre-processing advice are about code paths the checks
    below verify against PyTorch; errors still show."""
    import torch

    quiet = [logging.getLogger(n) for n in ("runtime.providers", "optimum", "transformers", "torch.onnx")]
    levels = [lg.level for lg in quiet]
    root_filter = _OnlyErrors()  # onnxruntime's quantizer warns through the root logger itself
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        for category in (UserWarning, FutureWarning, DeprecationWarning):
            warnings.simplefilter("ignore", category)
        logging.getLogger().addFilter(root_filter)
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger().removeFilter(root_filter)
            for lg, level in zip(quiet, levels):
                lg.setLevel(level)


def _check_line(c: dict) -> str:
    parts = [f"max |logit diff| {c['max_abs_logit_diff']:.2g}", f"mean cosine {c['mean_cosine']:.4f}",
             f"argmax agreement {c['argmax_agreement']:.0%}"]
    if "kv_cache_greedy_equal" in c:
        parts.append(f"KV-cache greedy {'equal' if c['kv_cache_greedy_equal'] else 'DIFFERENT'}")
    return f"{', '.join(parts)} (rule: {c['rule']}): {'passed' if c['passed'] else 'REFUSED'}"


def export_model(checkpoint: Path, out_root: Path, kind: str, precisions: list[str] | None = None,
                 tol: Tolerance = Tolerance(), force: bool = False) -> ExportResult:
    """Export `checkpoint` as `kind` ('lm' or 'classifier') in the given precisions, or reuse the cache."""
    from runtime.providers import cuda_usable

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}")
    kind = ModelKind(kind)
    if precisions is None:
        precisions = ["fp32", "int8"] + (["fp16"] if cuda_usable() else [])
    key = export_key(checkpoint, kind if kind == ModelKind.LM else f"{kind}-f{CLASSIFIER_FORMAT}", precisions)
    out = Path(out_root) / f"{kind}-{key}"
    cached = load_export(out)
    if cached and not force:
        return cached

    with quiet_export():
        result = _export(checkpoint, out, kind, key, precisions, tol)
    log.info("step export %s %s + checks done in %.1f s -> %s", kind, "+".join(precisions),
             json.loads((out / "manifest.json").read_text())["seconds"], out)
    return result


def staging_dir(out: Path) -> Path:
    """An empty `<out>.tmp` to build an export in: a build that fails or is killed never leaves a half export
    where load_export would take it for a finished one."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def publish(result: ExportResult, out: Path, manifest: dict) -> ExportResult:
    """Write the manifest (written last: it marks the export as checked) and move the staging folder to `out`."""
    (result.path / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    result.path.rename(out)
    result.path = out
    return result


def _export(checkpoint: Path, out: Path, kind: str, key: str, precisions: list[str], tol: Tolerance) -> ExportResult:
    from optimum.exporters.onnx import main_export
    from transformers import AutoTokenizer

    t0 = time.time()
    tmp = staging_dir(out)
    src = tmp / "src"
    model = _load_torch(checkpoint, kind)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if kind == ModelKind.LM:
        _untie_lm_head(model)
    model.save_pretrained(src)
    save_tokenizer(tokenizer, src)
    main_export(str(src), output=tmp / "fp32", task=KINDS[kind], do_validation=False, library_name="transformers")
    if "fp16" in precisions:
        main_export(str(src), output=tmp / "fp16", task=KINDS[kind], device="cuda", dtype="fp16",
                    do_validation=False, library_name="transformers")
    if "int8" in precisions:
        quantize_int8(tmp / "fp32" / "model.onnx", tmp / "int8" / "model.onnx", INT8_OPS[kind], FP32_MATMULS[kind],
                      nbits=NBITS_MATMULS[kind])
    save_tokenizer(tokenizer, tmp)
    model.config.save_pretrained(tmp)
    shutil.rmtree(src)
    result = ExportResult(tmp, kind, key, precisions)
    result.checks = check_export(result, model, tokenizer, tol)  # raises ExportRefused: nothing registered
    manifest = {"kind": kind, "key": key, "precisions": precisions, "checks": result.checks,
                "checkpoint": str(checkpoint), "tolerance": asdict(tol), "versions": _versions(),
                "seconds": round(time.time() - t0, 1),
                **({"classifier_format": CLASSIFIER_FORMAT} if kind == ModelKind.CLASSIFIER else {})}
    return publish(result, out, manifest)
