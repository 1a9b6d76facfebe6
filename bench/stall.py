"""How long a long prompt arriving mid-stream holds up another user's tokens (continuous batching, chunked prefill).

    python -m bench.stall [--task summarize] [--prompt-tokens 700] [--chunks 64,128,100000]

One answer streams through the task's decode loop; after its 10th token a second request with a long prompt
arrives. Prints, per prefill chunk size, the longest gap between two tokens of the first answer while the second
is prefilled, beside its median gap (100000 = the whole prompt at once). Models as prepared (int8 on CPU).
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time


def run(task: str, prompt_tokens: int, chunk: int) -> dict:
    from config import settings
    from runtime.decoder import ContinuousDecoder
    from runtime.lm import Sampling
    from runtime.models import ModelSet

    s = settings()
    backend = ModelSet(s.models_dir, s.provider, s.precision, s.ort_threads).get(task)
    decoder = ContinuousDecoder(backend.model, max_batch=8, prefill_chunk=chunk)
    tok = backend.model.tokenizer
    first = tok("The harbour town woke slowly. Fishermen checked their nets.", add_special_tokens=False).input_ids
    long = (tok("Children ran along the quay towards the school on the hill. ", add_special_tokens=False).input_ids
            * prompt_tokens)[:prompt_tokens]
    stamps: list[float] = []
    arrived: list[float] = []
    lora = backend.model.lora

    def second():
        arrived.append(time.perf_counter())
        for _ in decoder.stream(long, Sampling(max_new_tokens=4), lora):
            pass
        arrived.append(time.perf_counter())

    helper = None
    for i, _ in enumerate(decoder.stream(first, Sampling(max_new_tokens=60, no_repeat_ngram=0), lora)):
        stamps.append(time.perf_counter())
        if i == 9:
            helper = threading.Thread(target=second)
            helper.start()
    helper.join()
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    during = [b - a for a, b in zip(stamps, stamps[1:]) if arrived and b >= arrived[0] and a <= arrived[-1]]
    return {"median_gap_s": statistics.median(gaps[:9]), "max_gap_during_s": max(during) if during else float("nan"),
            "second_done_s": arrived[-1] - arrived[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="summarize")
    p.add_argument("--prompt-tokens", type=int, default=700)
    p.add_argument("--chunks", default="64,128,100000")
    a = p.parse_args(argv)
    print(f"| prefill chunk | first answer: median gap s (alone) | longest gap while a {a.prompt_tokens}-token "
          "prompt is prefilled s | second request done after s |\n|---|---|---|---|")
    for chunk in (int(c) for c in a.chunks.split(",")):
        r = run(a.task, a.prompt_tokens, chunk)
        print(f"| {chunk} | {r['median_gap_s']:.3f} | {r['max_gap_during_s']:.3f} | {r['second_done_s']:.1f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
