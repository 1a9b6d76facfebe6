"""Command line for building models: `python -m export prepare` readies every task for serving."""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv: list[str] | None = None) -> int:
    from config import settings

    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="prepare the base GPT, export to ONNX, register a model per task")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    t = sub.add_parser("train", help="build data, fine-tune, merge, export, evaluate and register one task")
    t.add_argument("--task", required=True)
    t.add_argument("--scale", type=float, default=1.0, help="multiply steps, data and time budget (GPU hosts)")
    t.add_argument("--steps", type=int, help="override the number of training steps")
    t.add_argument("--time-budget", type=float, help="override the training time budget (seconds)")
    t.add_argument("--lr", type=float, help="override the peak learning rate (e.g. lower for a --continue run: it "
                                            "warms up again from the tuned adapter)")
    t.add_argument("--extra", action="append", default=[], help="extra training data: a file or a feedback export")
    t.add_argument("--eval-n", type=int, help="held-out examples to evaluate (default: per task)")
    t.add_argument("--eval-every", type=int, help="classifiers: score the validation split every N steps")
    t.add_argument("--continue", dest="go_on", action="store_true",
                   help="train the committed adapter further, on training rows it has not drawn yet")
    t.add_argument("--candidate", metavar="DIR", help="train into DIR and stop (no evaluation, no release); "
                                                    "compare it on validation with python -m bench.candidate")
    e = sub.add_parser("evaluate", help="evaluate the committed adapter of a task and rewrite its model card")
    e.add_argument("--task", required=True)
    e.add_argument("--eval-n", type=int)
    c = sub.add_parser("compare-bases", help="score each base on a task's validation split (classifiers: the "
                                             "recipe trained on each; generation: zero-shot) into "
                                             "adapters/<task>/base_comparison.json, shown in its card")
    c.add_argument("--task", required=True)
    c.add_argument("--bases", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    c.add_argument("--steps", type=int, help="override the number of training steps")
    c.add_argument("--time-budget", type=float, help="override the training time budget (seconds)")
    c.add_argument("--eval-n", type=int, help="validation rows for generation tasks (default: the task's size)")
    f = sub.add_parser("feedback", help="export collected feedback as training data (JSONL, Parquet, CSV)")
    f.add_argument("--out", required=True, help="output folder")
    f.add_argument("--task", help="only this task")
    f.add_argument("--since", help="ISO date/time (UTC), inclusive")
    f.add_argument("--until", help="ISO date/time (UTC), exclusive")
    f.add_argument("--model-version", help="only answers from this model version")
    args = parser.parse_args(argv)
    from runtime.logs import setup_logging

    setup_logging()

    if args.cmd == "prepare":
        from export.prepare import prepare_models
        from tasks import REGISTRY

        prepare_models(settings(), list(REGISTRY), force=args.force)
    elif args.cmd in ("train", "evaluate"):
        from export.pipeline import run_task

        run_task(args.task, train=args.cmd == "train", scale=getattr(args, "scale", 1.0),
                 steps=getattr(args, "steps", None), time_budget=getattr(args, "time_budget", None),
                 extra=getattr(args, "extra", []), eval_n=args.eval_n, go_on=getattr(args, "go_on", False),
                 eval_every=getattr(args, "eval_every", None), candidate=getattr(args, "candidate", None),
                 lr=getattr(args, "lr", None))
    elif args.cmd == "compare-bases":
        from export.pipeline import compare_bases

        for base, run in compare_bases(args.task, args.bases, args.steps, args.eval_n,
                                               args.time_budget)["runs"].items():
            print(f"{args.task} on {base}: validation {run['metric']} {run['best']:.4f} ({run['run']})")
    elif args.cmd == "feedback":
        from feedback.export import parse_time
        from feedback.store import FeedbackStore
        from feedback.export import ExportFilter, export_feedback

        s = settings()
        store = FeedbackStore(s.db_url(), s.data_dir / "spool.jsonl")
        store.migrate()
        store.flush_spool()
        written = export_feedback(store, args.out, ExportFilter(args.task, parse_time(args.since, "--since"),
                                                                parse_time(args.until, "--until"),
                                                                args.model_version))
        for name, n in written.items():
            print(f"{n:8d}  {args.out}/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
