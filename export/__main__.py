"""Command line for building models: `python -m export prepare` readies every task for serving."""
from __future__ import annotations

import argparse
import logging
import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv: list[str] | None = None) -> int:
    from config import settings

    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="prepare the base GPT, export to ONNX, register a model per task")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    from runtime.logs import setup_logging

    setup_logging()

    if args.cmd == "prepare":
        from export.prepare import prepare
        from tasks import REGISTRY

        prepare(settings(), list(REGISTRY), force=args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
