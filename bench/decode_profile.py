"""Where int8 decode time goes: ONNX Runtime's profiler over batch-1 decode steps, kernel time by op type.

    python -m bench.decode_profile [--task summarize] [--prompt-tokens 256] [--steps 64] [--precision int8]

Prints each op type's share of kernel time over the decode steps (the prompt step is left out). The
profiler slows every step, so read shares, not milliseconds.
"""
from __future__ import annotations

import argparse
import collections
import json
import tempfile


def run(task: str, prompt_tokens: int, steps: int, precision: str) -> dict[str, float]:
    from config import settings
    from runtime import providers, registry

    s = settings()
    mv = registry.current(s.models_dir, task)
    if mv is None:
        raise SystemExit(f"no model registered for {task}: run `python -m export prepare` first")
    plain = providers.session_options
    with tempfile.TemporaryDirectory() as tmp:
        def profiled(threads=0, spin=True):
            opts = plain(threads, spin)
            opts.enable_profiling, opts.profile_file_prefix = True, f"{tmp}/ort"
            return opts

        providers.session_options = profiled  # open_session looks it up at call time
        try:
            from runtime.models import ModelSet

            model = ModelSet(s.models_dir, "cpu", precision).get(task).model
        finally:
            providers.session_options = plain
        ids = model.tokenizer("word " * prompt_tokens, add_special_tokens=False).input_ids[:prompt_tokens]
        model.generate_batch([ids], steps + 1, ignore_stop=True)  # greedy, batch 1, exactly `steps` decode steps
        with open(model.session.end_profiling()) as f:
            events = json.load(f)
    runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    first_decode = runs[1]["ts"]
    by_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["ts"] >= first_decode and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(by_op.values())
    shares = {op: v / total for op, v in by_op.most_common()}
    print(f"{task} {mv.version} {precision}: {len(runs) - 1} decode steps after a {len(ids)}-token prompt")
    for op, share in list(shares.items())[:15]:
        print(f"  {op:28s} {100 * share:5.1f}%")
    return shares


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.decode_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="summarize")
    p.add_argument("--prompt-tokens", type=int, default=256)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--precision", default="int8")
    args = p.parse_args(argv)
    run(args.task, args.prompt_tokens, args.steps, args.precision)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
