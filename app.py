"""Entry point (also the Space's app_file): prepare models if needed, then serve the Gradio app."""
from __future__ import annotations

import argparse
import logging
import os
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Gradio rebuilds a pandas table of every event served so far after each event (its /monitoring summary):
# O(events) per request, measured at ~10% of the server's CPU under load. Every 1,000 events is enough.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
log = logging.getLogger("app")


def create_service(build_missing: bool = True, background: bool = True):
    """The service over every task's model (building them first when `build_missing`). With `background`
    the models load on a thread while the server already answers (a request for a task that is not loaded
    yet loads it first); without it they are all loaded before this returns."""
    from serving.service import Service
    from config import settings
    from runtime.models import ModelSet
    from tasks import REGISTRY, load_order

    s = settings()
    if build_missing:
        from export.prepare import prepare_models, ready

        if not ready(s, list(REGISTRY)):
            log.info("models are not prepared yet: preparing (first start only, a few minutes)")
            prepare_models(s, list(REGISTRY))
    models = ModelSet(s.models_dir, s.provider, s.precision, s.ort_threads, s.max_batch, s.prefill_chunk,
                      s.prefix_cache_mb, s.decode_graph, s.merged_decode, lookahead=s.lookahead)
    order = load_order()
    warmups = {n: REGISTRY[n].warmup for n in order if REGISTRY[n].warmup}
    if background:
        models.load_in_background(order, warmups)
    else:
        for name in order:
            models.load(name)
            if name in warmups:
                warmups[name]()
    return Service(models, s)


def create_store():
    """The feedback store, migrated; None (feedback off) only if even the local SQLite cannot be opened."""
    from feedback.store import FeedbackStore
    from config import settings

    s = settings()
    store = FeedbackStore(s.db_url(), s.data_dir / "spool.jsonl")
    try:
        store.migrate()
        store.flush_spool()
    except Exception:  # noqa: BLE001 - a dead database must not stop the app: feedback is spooled
        log.exception("feedback database unavailable at start; feedback will be spooled until it is back")
    return store


def start_retention(s, store) -> None:
    """With NLPAPP_RETENTION_DAYS set, erase older answers at start and then every hour (a daemon thread)."""
    import threading

    if not s.retention_days or store is None:
        return

    def loop():
        while True:
            try:
                store.purge_older_than(s.retention_days)
            except Exception:  # noqa: BLE001 - a dead database: try again next hour
                log.exception("retention purge failed")
            time.sleep(3600)

    threading.Thread(target=loop, name="retention", daemon=True).start()
    log.info("answers older than %g days are erased hourly (NLPAPP_RETENTION_DAYS)", s.retention_days)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--no-prepare", action="store_true", help="fail instead of building missing models")
    args = parser.parse_args(argv)
    from runtime.logs import setup_logging

    setup_logging()

    from config import settings

    service = create_service(build_missing=not args.no_prepare)  # the loader starts before gradio is imported
    from app.ui import build_demo, configure_queue, launch_options

    store = create_store()
    s = settings()
    demo = build_demo(service, store, s.admin_token)
    from feedback.snapshot import start_snapshots

    start_snapshots(s, store)
    start_retention(s, store)
    configure_queue(demo)
    demo.launch(server_name=args.host, server_port=args.port, **launch_options())


if __name__ == "__main__":
    main()
