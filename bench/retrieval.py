"""Knowledge-base retrieval as served (MiniLM, demo KB): hit@1/@3 on every held-out paraphrase, and the
similarity threshold's trade-off between in-scope questions kept and out-of-scope ones turned away.

    python -m bench.retrieval

The QA model card scores a 120-question sample through the whole answer path; this scores retrieval alone
on all of them (seconds), and shows what moving `tasks.qa.MIN_SCORE` would cost before anyone moves it. The
similarity threshold alone: the hand-over gate served on top of it has its own figures
(`python -m export.handover_gate`, adapters/qa/handover_gate/README.md).
"""
from __future__ import annotations

import argparse

import numpy as np


def run(thresholds: list[float]) -> str:
    from tasks import qa

    kb = qa.knowledge_base()  # the served index: questions, question+answer, training phrasings
    ids = [e.id for e in kb.entries]
    _, p_val, p_test = qa.paraphrase_split()
    o_train, o_val, o_test = qa.out_of_scope_split()

    def scores(rows):
        return kb.embedder.encode([r["text"] for r in rows]) @ kb.vectors().T

    lines = ["| held-out paraphrases | n | hit@1 | hit@3 | right entry shown (score >= MIN_SCORE) |",
             "|---|---|---|---|---|"]
    in_scope_top = []
    for name, rows in (("validation", p_val), ("test", p_test)):
        s = scores(rows)
        gold = np.array([ids.index(r["kb_id"]) for r in rows])
        top = np.argsort(-s, axis=1)[:, :qa.TOP_K]
        shown = [(g in t) and s[i, g] >= qa.MIN_SCORE for i, (g, t) in enumerate(zip(gold, top))]
        lines.append(f"| {name} | {len(rows)} | {np.mean(top[:, 0] == gold):.1%} | "
                     f"{np.mean((top == gold[:, None]).any(1)):.1%} | {np.mean(shown):.1%} |")
        in_scope_top.append(s.max(1))
    in_val, in_top = in_scope_top[0], np.concatenate(in_scope_top)
    oos_tune, oos_test = scores(o_train + o_val).max(1), scores(o_test).max(1)
    # Choose on the first two columns (validation paraphrases; off-topic questions of train+val); the others
    # include the test split and are for reading after the choice.
    lines += ["", f"| threshold | in-scope with an entry shown: validation (n={len(in_val)}) | out-of-scope with "
                  f"none shown: train+val (n={len(oos_tune)}) | in-scope, validation+test (n={len(in_top)}) | "
                  f"out-of-scope, test (n={len(oos_test)}) |", "|---|---|---|---|---|"]
    for t in thresholds:
        mark = " (served)" if abs(t - qa.MIN_SCORE) < 1e-9 else ""
        lines.append(f"| {t:.2f}{mark} | {np.mean(in_val >= t):.1%} | {np.mean(oos_tune < t):.1%} | "
                     f"{np.mean(in_top >= t):.1%} | {np.mean(oos_test < t):.1%} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.retrieval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--thresholds", default="0.35,0.40,0.45,0.50,0.55,0.60,0.65")
    args = p.parse_args(argv)
    print(run([float(t) for t in args.thresholds.split(",")]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
