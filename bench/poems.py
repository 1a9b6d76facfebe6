"""Chinese poems in regulated form on the generate task's validation split: as served, and with the form left free.

    python -m bench.poems [--n 20] [--show 3]

Samples a poem for each validation first line the way the app does (temperature 0.7, 160 new tokens, served
precision), once in the "poem (zh)" style (the form held by decoding, tasks.verse) and once in the free form,
and prints the share in form and a few poems of each. Validation only: it is for checking the constraint before the test split is scored.
"""
from __future__ import annotations

import argparse


def main(argv=None) -> int:
    from config import settings
    from export.evaluate import eval_rows, generate_all, open_version
    from runtime import registry
    from tasks import REGISTRY, build_data
    from tasks.generation import POEM, POEM_FREE

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--show", type=int, default=3)
    a = p.parse_args(argv)
    s, task = settings(), REGISTRY["generate"]
    rows = task.evaluation.sampled_rows(eval_rows(task, build_data("generate"), 10_000, split="val"))
    rows = [r for style in (POEM, POEM_FREE) for r in [r for r in rows if r["options"]["style"] == style][:a.n]]
    backend = open_version(s.models_dir, registry.current(s.models_dir, "generate"))
    answers = generate_all(task, backend, s, rows)
    scores = task.evaluation.extra_scores(rows, answers)
    print(f"{backend.describe}; {scores['poems_sampled']} validation first lines")
    for key, style in (("poems_in_form", POEM), ("poems_in_form_free", POEM_FREE)):
        print(f"\n{style}: {scores[key]:.0%} in form")
        for poem in [x for r, x in zip(rows, answers) if r["options"]["style"] == style][:a.show]:
            print("  " + poem.replace("\n", " / "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
