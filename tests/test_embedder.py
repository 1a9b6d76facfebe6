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
