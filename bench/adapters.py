"""Shared base graph + run-time adapter vs merged single-task export, on each generation task's validation split.

    python -m bench.adapters [--tasks translate summarize] [--n 40]

Scores the same validation rows through (a) the task's adapter applied at run time to the shared LoRA-ready
base graph, int8 and fp32, and (b) the adapter merged into its own int8 export (NLPAPP_ADAPTERS=merged builds it),
and prints the task metric and the wall time of each. Validation only: this chooses the serving mode, so it must
not look at the test split. Needs `python -m export prepare` run in both modes (the caches keep both).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace


def main(argv=None) -> int:
    from bench.__main__ import merged_export
    from config import settings
    from export.evaluate import eval_rows, open_version, score
    from runtime import registry
    from tasks import REGISTRY, build_data

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["translate", "summarize"])
    p.add_argument("--n", type=int, default=40)
    a = p.parse_args(argv)
    s = settings()
    print(f"validation split, first {a.n} rows as the task's evaluation selects them; int8 unless said")
    print("| task | variant | metric | seconds |\n|---|---|---|---|")
    for name in a.tasks:
        task = REGISTRY[name]
        mv = registry.current(s.models_dir, name)
        if mv is None or not mv.adapter:
            print(f"| {name} | (not served as a run-time adapter: run `python -m export prepare`) | | |")
            continue
        rows = eval_rows(task, build_data(name), a.n, split="val")
        variants = [("shared base + adapter", mv, "int8"), ("shared base + adapter, fp32", mv, "fp32")]
        merged = merged_export(mv.version)
        if merged:
            variants.append(("merged export", replace(mv, path=merged, adapter=""), "int8"))
        metric = task.evaluation.metric
        for label, version, precision in variants:
            t0 = time.perf_counter()
            m = score(task, open_version(s.models_dir, version, precision), s, rows)
            print(f"| {name} | {label} | {metric} {m[metric]:.4f} | {time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
