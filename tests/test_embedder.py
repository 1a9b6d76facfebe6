"""The retrieval embedder's on-disk cache: the same texts are embedded once, any change is embedded anew."""
from __future__ import annotations

import numpy as np
import pytest


def test_cached_embeddings_equal_fresh_ones_and_skip_the_model(tmp_path, monkeypatch):
    from runtime.embedder import shared

    emb = shared()
    texts = ["How do I pay?", "Where is my order?", "退货需要多久？"]
    first = emb.encode_cached(texts, tmp_path)
    np.testing.assert_allclose(first, emb.encode(texts), atol=1e-6)
    assert len(list(tmp_path.glob("*.npy"))) == 1

    def no_model(*a, **k):
        raise AssertionError("the model ran although the embeddings were cached")

    monkeypatch.setattr(emb, "encode", no_model)
    np.testing.assert_array_equal(emb.encode_cached(texts, tmp_path), first)
    with pytest.raises(AssertionError, match="the model ran"):  # one text changed: a new key, the model runs
        emb.encode_cached(texts[:2] + ["退货需要多久?"], tmp_path)
    monkeypatch.undo()
    next(tmp_path.glob("*.npy")).write_bytes(b"not an array")  # a damaged file is recomputed
    np.testing.assert_allclose(emb.encode_cached(texts, tmp_path), first, atol=1e-6)


def test_onnx_embedder_gives_the_pytorch_vectors_and_its_export_is_kept(embedder_onnx, tmp_path):
    """What serving loads (the ONNX export) ranks as PyTorch does; an export of another model is not used."""
    import json
    import shutil

    from export.embedder import build_embedder
    from runtime.embedder import Embedder, onnx_export_of

    texts = ["How do I pay?", "Where is my order?", "退货需要多久？", "¿Puedo devolver un artículo usado?", "x",
             "shipping " * 200]
    onnx, torch_ = Embedder(onnx_folder=embedder_onnx), Embedder()
    assert hasattr(onnx, "session") and not hasattr(torch_, "session")
    a, b = onnx.encode(texts, batch_size=4), torch_.encode(texts)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert build_embedder(embedder_onnx.parent) == embedder_onnx  # current: kept, not exported again
    other = tmp_path / "embedder"
    shutil.copytree(embedder_onnx, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["from"]["weights_bytes"] += 1  # made from different weights
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert onnx_export_of(onnx.model_dir, other) is None
    assert not hasattr(Embedder(onnx_folder=other), "session")  # falls back to PyTorch rather than serve it
