"""The one place that picks execution providers and precisions, and logs what a session really got."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class Placement:
    """What a session asked for and what it really runs on."""

    requested: tuple[str, ...]
    provider: str  # the first provider the session really got
    precision: str

    @property
    def device(self) -> str:
        return "cuda" if self.provider == CUDA else "cpu"


def _ort():
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # the CUDA load failure on CPU hosts is expected; we log the outcome
    return ort


def requested_providers(force: str = "auto") -> list[str]:
    """Providers to ask for. `get_available_providers()` lists CUDA even where it cannot load, so 'auto' asks
    for CUDA first only where the probe (cuda_usable) got it; `session.get_providers()` says what was really got."""
    force = (force or "auto").lower()
    if force == "cpu":
        return [CPU]
    if force == "cuda":
        return [CUDA, CPU]
    if force != "auto":
        raise ValueError(f"NLPAPP_PROVIDER must be auto, cpu or cuda, not {force!r}")
    return [CUDA, CPU] if cuda_usable() else [CPU]


_cuda_probe: bool | None = None


def cuda_usable() -> bool:
    """True when a session really gets the CUDA provider (probed once with a one-node model)."""
    global _cuda_probe
    if _cuda_probe is None:
        ort = _ort()
        if CUDA not in ort.get_available_providers():
            _cuda_probe = False
        else:
            from onnx import TensorProto, helper

            node = helper.make_node("Identity", ["x"], ["y"])
            graph = helper.make_graph(
                [node], "probe",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
            )
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            model.ir_version = 9
            ort.set_default_logger_severity(4)  # a failed CUDA load is the expected answer on CPU hosts
            try:
                sess = ort.InferenceSession(model.SerializeToString(), providers=[CUDA, CPU])
                _cuda_probe = sess.get_providers()[0] == CUDA
            except Exception:  # noqa: BLE001 - any failure means no CUDA
                _cuda_probe = False
            finally:
                ort.set_default_logger_severity(3)
        log.info("CUDA execution provider usable: %s", _cuda_probe)
    return _cuda_probe


def choose_precision(force: str, provider_force: str, available: list[str]) -> str:
    """int8 on CPU by default (int8 does not run on the CUDA provider), fp16 on CUDA; forced if asked."""
    force = (force or "auto").lower()
    if force not in {"auto", "fp32", "int8", "fp16"}:
        raise ValueError(f"NLPAPP_PRECISION must be auto, fp32, int8 or fp16, not {force!r}")
    on_cuda = provider_force != "cpu" and cuda_usable()
    if force == "auto":
        wanted = "fp16" if on_cuda else "int8"
        for p in (wanted, "fp32"):
            if p in available:
                return p
        return available[0]
    if force not in available:
        raise FileNotFoundError(f"precision {force} was not exported; available: {available}")
    return force


def session_options(threads: int = 0, spin: bool = True):
    ort = _ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if not spin:
        # Idle intra-op threads sleep instead of busy-waiting. Alone, a classifier loses 12% at batch 1 and
        # nothing at batch 32 (a decode stream would lose 20%: LMs keep spinning), but two classifier sessions
        # batching at once stop burning the 2 cores against each other: 8 users 37 -> 53 requests/s,
        # p95 307 -> 214 ms (BENCHMARKS.md).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def open_session(path: Path, precision: str, force: str = "auto", threads: int = 0, spin: bool = True):
    """Create an InferenceSession and log the provider it really got. Returns (session, Placement)."""
    ort = _ort()
    wanted = requested_providers(force)
    if precision == "int8" and CUDA in wanted:
        wanted = [CPU]  # dynamic-quantized int8 ops have no CUDA kernels
    sess = ort.InferenceSession(str(path), sess_options=session_options(threads, spin), providers=wanted)
    got = sess.get_providers()
    placement = Placement(tuple(wanted), got[0], precision)
    if force == "cuda" and got[0] != CUDA:
        log.warning("CUDA was forced but the session got %s", got)
    log.info("ONNX session %s: asked %s, got %s (%s)", Path(path).name, wanted, got, precision)
    return sess, placement
