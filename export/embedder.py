"""Export the retrieval embedder (MiniLM) to ONNX, checked against PyTorch, so serving needs neither torch nor
transformers."""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from runtime.embedder import EXPORT_FOLDER, default_model_dir, mean_pool, onnx_export_of, source_fingerprint

log = logging.getLogger(__name__)
# Sentence vectors of the export against PyTorch's, on CHECK_TEXTS. fp32 on CPU measured ~3e-6 in hidden states.
MAX_VECTOR_DIFF = 1e-4
CHECK_TEXTS = ["Where is my order?", "x", "Wie lange dauert die Rückgabe? 退货需要多久？ ¿Cuánto tarda?",
               "a long question " * 60]


def build_embedder(models_dir: Path, model_dir: str | None = None, force: bool = False) -> Path:
    """The embedder's ONNX export under `models_dir` (built when missing or made from another model)."""
    model_dir = model_dir or default_model_dir()
    out = Path(models_dir) / EXPORT_FOLDER
    if not force and onnx_export_of(model_dir, out) is not None:
        return out
    import onnxruntime as ort
    import torch
    from optimum.exporters.onnx import main_export
    from transformers import AutoModel, AutoTokenizer

    from export.onnx_export import quiet_export

    t0 = time.perf_counter()
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_export():  # the tracer's notes on frozen conditions: the check below is what counts
        main_export(model_dir, output=tmp, task="feature-extraction", do_validation=False,
                    library_name="transformers")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    enc = tok(CHECK_TEXTS, padding=True, truncation=True, max_length=128, return_tensors="np")
    session = ort.InferenceSession(str(tmp / "model.onnx"), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    hidden = session.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]
    with torch.no_grad():
        ref = model(**{k: torch.tensor(v) for k, v in enc.items()}).last_hidden_state.numpy()
    diff = float(np.abs(mean_pool(hidden, enc["attention_mask"]) - mean_pool(ref, enc["attention_mask"])).max())
    if diff > MAX_VECTOR_DIFF:
        raise RuntimeError(f"embedder ONNX export differs from PyTorch by {diff:.2e} (> {MAX_VECTOR_DIFF})")
    (tmp / "manifest.json").write_text(json.dumps(
        {"from": source_fingerprint(model_dir), "check": {"texts": len(CHECK_TEXTS), "max_vector_diff": diff}},
        indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    log.info("embedder exported to %s in %.1f s (sentence vectors within %.1e of PyTorch)", out,
             time.perf_counter() - t0, diff)
    return out
