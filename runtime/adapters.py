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
    packed: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}  # fused-attention graphs: one q/k/v input
    for module, ab in pairs.items():
        a_name = f"lora_A.{module}"
        layer, proj = module.rsplit(".", 1)
        if a_name not in feeds and proj in _QKV and f"lora_A.{layer}.qkv_proj" in feeds and set(ab) == {"A", "B"}:
            packed.setdefault(layer, {})[proj] = _factors(cfg, proj, ab["A"], ab["B"])
            continue
        if a_name not in feeds or set(ab) != {"A", "B"}:
            raise AdapterMismatch(f"{folder}: the base graph has no LoRA input for {module}")
        a, b = _factors(cfg, proj, ab["A"], ab["B"])
        _put(feeds, module, a, b, folder)
    for layer, parts in packed.items():
        d_in, d_out = feeds[f"lora_A.{layer}.qkv_proj"].shape[1], feeds[f"lora_B.{layer}.qkv_proj"].shape[2]
        _put(feeds, f"{layer}.qkv_proj", *_pack_qkv(parts, d_in, d_out, folder), folder)
    return LoraFeeds(name or folder.name, feeds)


_QKV = ("q_proj", "k_proj", "v_proj")


def _factors(cfg: dict, proj: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PEFT's A [r, in], B [out, r] -> the graph's A [in, r] and scale * B [r, out]."""
    r = a.shape[0]
    alpha = cfg.get("alpha_pattern", {}).get(proj, cfg.get("lora_alpha", r))
    r_cfg = cfg.get("rank_pattern", {}).get(proj, cfg.get("r", r))
    scale = alpha / (r_cfg ** 0.5 if cfg.get("use_rslora") else r_cfg)
    return a.T, b.T * np.float32(scale)


def _put(feeds: dict, module: str, a: np.ndarray, b: np.ndarray, folder: Path) -> None:
    a_name, b_name = f"lora_A.{module}", f"lora_B.{module}"
    if a.shape[0] != feeds[a_name].shape[1] or b.shape[1] != feeds[b_name].shape[2]:
        raise AdapterMismatch(f"{folder}: {module} has shape {a.shape[0]}->{b.shape[1]}, the base graph "
                              f"{feeds[a_name].shape[1]}->{feeds[b_name].shape[2]}: trained on another base")
    dtype = feeds[a_name].dtype  # the graph's float type (fp16 exports take fp16 factors)
    feeds[a_name] = np.ascontiguousarray(a[None], dtype=dtype)
    feeds[b_name] = np.ascontiguousarray(b.astype(dtype)[None])


def _pack_qkv(parts: dict, d_in: int, d_out: int, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """One LoRA for a packed q/k/v projection (output = [q | k | v]): A's columns side by side, B block-diagonal,
    so x A B = [x A_q B_q | x A_k B_k | x A_v B_v] exactly. A projection the adapter skips gets rank 0."""
    q_out = parts["q_proj"][1].shape[1] if "q_proj" in parts else d_in  # query width = hidden size (Llama, Qwen2)
    kv = (d_out - q_out) // 2
    widths = [parts[p][1].shape[1] if p in parts else (q_out if p == "q_proj" else kv) for p in _QKV]
    if sum(widths) != d_out:
        raise AdapterMismatch(f"{folder}: q/k/v widths {widths} do not add up to the packed projection's {d_out}")
    ranks = [parts[p][0].shape[1] if p in parts else 0 for p in _QKV]
    a = np.zeros((d_in, sum(ranks)), np.float32)
    b = np.zeros((sum(ranks), d_out), np.float32)
    r0 = c0 = 0
    for p, r, w in zip(_QKV, ranks, widths):
        if p in parts:
            a[:, r0:r0 + r], b[r0:r0 + r, c0:c0 + w] = parts[p]
        r0, c0 = r0 + r, c0 + w
    return a, b


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
