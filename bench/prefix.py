"""Time to first token of each generation tab's real prompts, with the prompt-prefix cache off and on.

    python -m bench.prefix [--n 12] [--tasks generate,summarize,translate,qa]

Per task: its first n validation inputs, rendered as the service renders them (qa's retrieval included), each sent
through the task's decode loop twice, once per decoder (cache off, then on; one request at a time, so the figure is
prefill alone). Prints the median and total time to first token of each, the prompt lengths and how many prompt
tokens the cache supplied. Models as prepared (int8 on CPU); the fused graph only (the cache lives in its slots).
"""
from __future__ import annotations

import argparse
import statistics
import time


def ttft(decoder, ids, lora) -> float:
    from runtime.lm import Sampling

    t0 = time.perf_counter()
    stream = decoder.stream(ids, Sampling(max_new_tokens=1), lora)
    next(stream, None)
    stream.close()
    return time.perf_counter() - t0


def run(task_name: str, n: int) -> dict:
    from config import settings
    from runtime.decoder import decoder_for
    from runtime.models import ModelSet
    from serving.service import Reply, Service
    from tasks import REGISTRY, build_data

    s = settings()
    models = ModelSet(s.models_dir, s.provider, s.precision, s.ort_threads, s.max_batch)
    service, task, backend = Service(models, s), REGISTRY[task_name], models.get(task_name)
    lm = backend.model
    if not getattr(lm, "in_place", False):
        raise SystemExit(f"{task_name} is not served on the fused graph: no prefix cache to measure")
    off, on = decoder_for(lm, 8, s.prefill_chunk, 0), decoder_for(lm, 8, s.prefill_chunk, 64)
    times = {"off": [], "on": []}
    lengths = []
    for row in build_data(task_name).val[:n]:  # validation: inputs the tuning never saw, none from the test split
        opts = task.options(row.get("options") or {})
        if task.lookup:
            opts = task.lookup(row["text"], opts)
        ids = service._fit_prompt(task, lm.tokenizer, row["text"], opts, Reply(task_name))
        lengths.append(len(ids))
        times["off"].append(ttft(off, ids, lm.lora))
        times["on"].append(ttft(on, ids, lm.lora))
    off.close()
    on.close()
    return {"task": task_name, "n": len(lengths), "tokens": statistics.median(lengths),
            "off_ms": 1000 * statistics.median(times["off"]), "on_ms": 1000 * statistics.median(times["on"]),
            "off_total": sum(times["off"]), "on_total": sum(times["on"]),
            "reused": on.prefixes.tokens_reused, "prompt_tokens": sum(lengths), "hits": on.prefixes.hits}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--tasks", default="generate,summarize,translate,qa")
    a = p.parse_args(argv)
    print(f"time to first token, one request at a time, first {a.n} validation inputs per task")
    print("| task | prompt tokens (median) | TTFT off ms (median) | TTFT on ms (median) | total off s | total on s "
          "| prompt tokens from the cache |")
    print("|---|---|---|---|---|---|---|")
    for name in a.tasks.split(","):
        r = run(name, a.n)
        print(f"| {name} | {r['tokens']:.0f} | {r['off_ms']:.0f} | {r['on_ms']:.0f} | {r['off_total']:.2f} | "
              f"{r['on_total']:.2f} | {r['reused']} of {r['prompt_tokens']} ({r['hits']} of {r['n']} prompts) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
