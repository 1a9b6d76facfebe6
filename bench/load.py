"""Load test: N concurrent gradio_client users mixing every tab and feedback against an app on loopback.

    python -m bench.load --url http://127.0.0.1:7860/ --users 32 --seconds 300 [--db sqlite:///data/feedback.sqlite3]
                         [--inputs validation]

Bounded in time and count, loopback only. Prints throughput, p50/p95/p99 latency per kind, errors, and
(with --db) checks that every acknowledged feedback row is in the database.
"""
from __future__ import annotations

import argparse
import json
import random
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

# Generations under load are kept short: a task with a max-tokens control is asked for this many.
LOAD_MAX_NEW_TOKENS = 16


def request_args(task, rng: random.Random, pool: list[dict] | None = None) -> list:
    """One request's arguments for `task`: one of its sample inputs (or of `pool`'s rows, each with its own
    options), then its controls' values (defaults where the row has none; short generations)."""
    if pool:
        row = rng.choice(pool)
        text, options = row["text"], row.get("options") or {}
    elif task.sample_inputs:
        text, options = rng.choice(task.sample_inputs), {}
    else:
        raise ValueError(f"task {task.name!r} declares no sample_inputs to load-test with")
    return [text] + [LOAD_MAX_NEW_TOKENS if c.name == "max_new_tokens" else options.get(c.name, c.default)
                     for c in task.controls]


def validation_pools(tasks: list[str], n: int = 300) -> dict[str, list[dict]]:
    """Each task's first n validation rows: distinct inputs, as real users send (a few sample inputs repeated
    would let the prompt-prefix cache reuse whole prompts, which real traffic does not)."""
    from tasks import build_data

    return {name: build_data(name).val[:n] for name in tasks}


@dataclass
class Stats:
    latencies: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    feedback_ids: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, seconds: float | None, error: str | None = None):
        with self.lock:
            if error:
                self.errors.setdefault(kind, []).append(error)
            else:
                self.latencies.setdefault(kind, []).append(seconds)


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def user(url: str, deadline: float, max_requests: int, stats: Stats, seed: int, tasks: list[str],
         feedback_rate: float = 0.5, pools: dict | None = None):
    from gradio_client import Client

    from tasks import REGISTRY

    rng = random.Random(seed)
    client = Client(url, verbose=False)
    for _ in range(max_requests):
        if time.time() >= deadline:
            return
        name = rng.choice(tasks)
        args = request_args(REGISTRY[name], rng, (pools or {}).get(name))
        t = time.perf_counter()
        try:
            *_, answer_id = client.predict(*args, api_name=f"/{name}")
            stats.add(name, time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001
            stats.add(name, None, type(e).__name__ + ": " + str(e)[:120])
            continue
        if answer_id and rng.random() < feedback_rate:
            t = time.perf_counter()
            try:
                ack = client.predict(answer_id, rng.choice([1, -1]), None, "load test", api_name="/feedback")
                stats.add("feedback", time.perf_counter() - t)
                with stats.lock:
                    stats.feedback_ids.append((answer_id, "saved" in ack))
            except Exception as e:  # noqa: BLE001
                stats.add("feedback", None, type(e).__name__ + ": " + str(e)[:120])


def _reuse_ssl_contexts() -> None:
    """gradio_client opens two httpx clients per call and each builds an SSL context (loads the CA bundle),
    even for http:// on loopback: ~40 ms of CPU a call, 80% of this load generator's CPU (py-spy), taken
    from the same 2 cores as the server under test. One context per setting is shared instead."""
    import httpx._config
    import httpx._transports.default as transport

    if getattr(transport.create_ssl_context, "shared", False):
        return
    make, cache, lock = httpx._config.create_ssl_context, {}, threading.Lock()

    def shared(verify=True, cert=None, trust_env=True):
        if not isinstance(verify, bool) or cert is not None:
            return make(verify=verify, cert=cert, trust_env=trust_env)
        with lock:
            if (verify, trust_env) not in cache:
                cache[verify, trust_env] = make(verify=verify, cert=cert, trust_env=trust_env)
            return cache[verify, trust_env]

    shared.shared = True
    transport.create_ssl_context = shared


def run(url: str, users: int, seconds: float, max_requests: int = 10_000, tasks: list[str] | None = None,
        db: str | None = None, feedback_rate: float = 0.5, inputs: str = "samples") -> dict:
    host = urlparse(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise SystemExit("the load test only targets loopback addresses")
    from tasks import REGISTRY

    _reuse_ssl_contexts()
    tasks = tasks or list(REGISTRY)
    pools = validation_pools(tasks) if inputs == "validation" else None
    stats = Stats()
    deadline = time.time() + seconds
    t0 = time.time()
    threads = [threading.Thread(target=user, args=(url, deadline, max_requests, stats, i, tasks, feedback_rate, pools),
                                daemon=True)
               for i in range(users)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(seconds + 300)
    wall = time.time() - t0
    all_lat = [x for v in stats.latencies.values() for x in v]
    report = {"users": users, "seconds": round(wall, 1), "requests": len(all_lat),
              "errors": sum(len(v) for v in stats.errors.values()),
              "throughput_rps": round(len(all_lat) / wall, 2),
              "p50_ms": round(percentile(all_lat, 50) * 1000), "p95_ms": round(percentile(all_lat, 95) * 1000),
              "p99_ms": round(percentile(all_lat, 99) * 1000),
              "by_kind": {k: {"n": len(v), "p50_ms": round(percentile(v, 50) * 1000),
                              "p95_ms": round(percentile(v, 95) * 1000), "p99_ms": round(percentile(v, 99) * 1000)}
                          for k, v in sorted(stats.latencies.items())},
              "error_samples": {k: v[:3] for k, v in stats.errors.items()},
              "feedback_acknowledged": sum(ok for _, ok in stats.feedback_ids)}
    if db:
        from feedback.store import FeedbackStore

        store = FeedbackStore(db, "/dev/null")
        ids = {r["id"] for r in store.export_rows()}
        report["feedback_rows_missing"] = sum(1 for a, ok in stats.feedback_ids if ok and a not in ids)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:7860/")
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--max-requests", type=int, default=10_000, help="per user")
    p.add_argument("--tasks", help="comma-separated subset, e.g. sentiment,finnews")
    p.add_argument("--db", help="SQLAlchemy URL of the app's feedback database, to check rows landed")
    p.add_argument("--feedback-rate", type=float, default=0.5, help="share of answers a user rates (0: none)")
    p.add_argument("--inputs", choices=["samples", "validation"], default="samples",
                   help="each task's few sample inputs, or its validation rows (distinct inputs, own options)")
    args = p.parse_args(argv)
    report = run(args.url, args.users, args.seconds, args.max_requests,
                 args.tasks.split(",") if args.tasks else None, args.db, args.feedback_rate, args.inputs)
    print(json.dumps(report, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
