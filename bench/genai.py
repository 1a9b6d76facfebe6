"""onnxruntime-genai, the peer runtime, on the same base model, so `python -m bench` can time it beside ours.

Its model builder runs as export/gqa_graph.py runs it (transformers 5 in a pip --target folder of its own), here
in genai's own precisions (int4: MatMulNBits everywhere, block 32, accuracy level 4; int8). Its runtime,
onnxruntime-genai alone in another --target folder, runs on the onnxruntime-gpu we already have (installed
--no-deps; version 0.18 needs onnxruntime >= 1.31); only the timing worker puts it on its PYTHONPATH.

    python -m bench.genai --precision int4      builds (once) and prints the model folder
"""
from __future__ import annotations

import argparse
from pathlib import Path

from export.gqa_graph import GENAI, pip_target, run_builder, tools_dir


def runtime_path() -> Path:
    """A folder to put on PYTHONPATH to import onnxruntime_genai next to our own stack."""
    return pip_target(tools_dir() / "genai-runtime", (GENAI,))


def build(base_dir: Path, precision: str) -> Path:
    """The base at `base_dir` (a Hugging Face folder) as genai's builder makes it for CPU, in `precision`."""
    out = tools_dir() / "genai-models" / f"{base_dir.name}-{precision}"
    if not (out / "genai_config.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        run_builder(base_dir, out, tools_dir(), out.parent / f"{out.name}.log", precision)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.genai", description=__doc__)
    p.add_argument("--precision", default="int4", choices=["int4", "int8", "fp32"])
    p.add_argument("--task", default="summarize", help="build the base this task's adapter runs on")
    args = p.parse_args(argv)
    from bench.__main__ import model_paths

    print(build(Path(model_paths(args.task)[1]), args.precision))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
