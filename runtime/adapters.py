"""A PEFT LoRA adapter read as the extra inputs of a LoRA-ready base graph (export/lora_graph.py)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight -> (model.layers.3.self_attn.q_proj, A)
_KEY = re.compile(r"^(?:base_model\.model\.)?(model\.layers\.\d+\.(?:self_attn|mlp)\.\w+)\.lora_([AB])(?:\.\w+)?"
                  r"\.weight$")


class AdapterMismatch(ValueError):
    """The adapter does not fit the base graph (other shapes, or modules the graph has no LoRA input for)."""


@dataclass
class LoraFeeds:
    """The arrays to feed for one adapter (or for none: rank-0 updates)."""

    name: str
    feeds: dict[str, np.ndarray]


def lora_inputs(session) -> dict[str, int]:
    """The LoRA inputs of a session's graph: input name -> its static dimension (d_in of A [n, in, r], d_out of
    B [n, r, out])."""
    out = {}
    for i in session.get_inputs():
        if i.name.startswith("lora_A."):
            out[i.name] = int(i.shape[1])
        elif i.name.startswith("lora_B."):
            out[i.name] = int(i.shape[2])
    return out


def _dtype(session):
    types = {i.type for i in session.get_inputs() if i.name.startswith("lora_")}
    return np.float16 if types == {"tensor(float16)"} else np.float32


def no_adapter(session) -> LoraFeeds:
    """Rank-0 updates: the graph computes the base model exactly (an empty MatMul adds zeros)."""
    feeds, dtype = {}, _dtype(session)
    for name, dim in lora_inputs(session).items():
        feeds[name] = np.zeros((1, dim, 0) if name.startswith("lora_A.") else (1, 0, dim), dtype)
    return LoraFeeds("none", feeds)


def read_adapter(folder: Path, session, name: str = "") -> LoraFeeds:
    """Feeds for the PEFT adapter in `folder`: A^T [in, r] and scale * B^T [r, out] per targeted projection;
    projections it does not target get rank 0. Refuses adapters the graph cannot express exactly."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    if cfg.get("peft_type", "LORA") != "LORA" or cfg.get("use_dora") or cfg.get("lora_bias"):
        raise AdapterMismatch(f"{folder}: only plain LoRA adapters can be applied at run time")
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        m = _KEY.match(key)
        if m is None:
            # A trained head or embedding (modules_to_save) changes base weights: only a merged export has it.
            raise AdapterMismatch(f"{folder}: tensor {key!r} is not a LoRA factor of a decoder projection")
        pairs.setdefault(m.group(1), {})[m.group(2)] = value.astype(np.float32)
    feeds = no_adapter(session).feeds
    for module, ab in pairs.items():
        a_name, b_name = f"lora_A.{module}", f"lora_B.{module}"
        if a_name not in feeds or set(ab) != {"A", "B"}:
            raise AdapterMismatch(f"{folder}: the base graph has no LoRA input for {module}")
        a, b = ab["A"], ab["B"]  # PEFT: A [r, in], B [out, r]
        r, proj = a.shape[0], module.rsplit(".", 1)[-1]
        alpha = cfg.get("alpha_pattern", {}).get(proj, cfg.get("lora_alpha", r))
        r_cfg = cfg.get("rank_pattern", {}).get(proj, cfg.get("r", r))
        scale = alpha / (r_cfg ** 0.5 if cfg.get("use_rslora") else r_cfg)
        if a.shape[1] != feeds[a_name].shape[1] or b.shape[0] != feeds[b_name].shape[2]:
            raise AdapterMismatch(f"{folder}: {module} has shape {a.shape[1]}->{b.shape[0]}, the base graph "
                                  f"{feeds[a_name].shape[1]}->{feeds[b_name].shape[2]}: trained on another base")
        dtype = feeds[a_name].dtype  # the graph's float type (fp16 exports take fp16 factors)
        feeds[a_name] = np.ascontiguousarray(a.T[None], dtype=dtype)
        feeds[b_name] = np.ascontiguousarray((b.T * np.float32(scale)).astype(dtype)[None])
    return LoraFeeds(name or folder.name, feeds)


def stack(rows: list[LoraFeeds]) -> dict[str, np.ndarray]:
    """Feeds for a batch whose sequences use different adapters: factors stacked along the batch, each rank
    padded with zeros to the largest (zero columns of A and rows of B add nothing). One adapter for every row
    is fed as it is (broadcast over the batch)."""
    if all(r is rows[0] for r in rows):
        return rows[0].feeds
    out = {}
    for name in rows[0].feeds:
        axis = 2 if name.startswith("lora_A.") else 1  # the rank axis of A [1, in, r] and B [1, r, out]
        rank = max(r.feeds[name].shape[axis] for r in rows)
        first = rows[0].feeds[name]
        shape = list(first.shape)
        shape[0], shape[axis] = len(rows), rank
        batch = np.zeros(shape, first.dtype)
        for i, r in enumerate(rows):
            f = r.feeds[name]
            if axis == 2:
                batch[i, :, :f.shape[2]] = f[0]
            else:
                batch[i, :f.shape[1], :] = f[0]
        out[name] = batch
    return out
