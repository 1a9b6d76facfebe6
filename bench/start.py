"""Start-up time: launch `app.py --no-prepare` (models already prepared) and time when it serves.

    python -m bench.start [--port 7871] [--repeats 3]

Measures, from process start: the page answering HTTP 200, then the first real answer of every tab
through gradio_client (asked in the order the loader uses, so the figure is "every tab answered").
Then the serving process's memory with every task loaded (resident now, and its peak).
Prints medians over the repeats. Needs the models prepared (`python -m export prepare`).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _wait_http(url: str, proc, deadline: float) -> None:
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the app did not serve its page in time")


def process_memory_mb(pid: int) -> dict:
    """Resident set now and its peak (VmRSS, VmHWM) of a running process, in MB (Linux /proc)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields.get("VmRSS", float("nan")), "peak_rss_mb": fields.get("VmHWM", float("nan"))}


def once(port: int, timeout: float = 300) -> dict:
    from gradio_client import Client

    from tasks import REGISTRY, load_order

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "app.py", "--no-prepare", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_http(url, proc, t0 + timeout)
        out = {"page": time.time() - t0}
        client = Client(url, verbose=False)
        for name in load_order():
            task = REGISTRY[name]
            args = [task.sample_inputs[0]] + [c.default for c in task.controls]
            client.predict(*args, api_name=f"/{name}")
            out[name] = time.time() - t0
        out.update(process_memory_mb(proc.pid))
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=7871)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    runs = [once(a.port) for _ in range(a.repeats)]
    print(f"app start, models prepared, {a.repeats} runs (median seconds from process start):")
    for k in runs[0]:
        xs = [r[k] for r in runs]
        if k.endswith("_mb"):
            label = {"rss_mb": "serving RSS, all tasks (MB)", "peak_rss_mb": "serving peak RSS (MB)"}[k]
            print(f"  {label:28s} {statistics.median(xs):6.0f}   runs: {', '.join(f'{x:.0f}' for x in xs)}")
            continue
        label = "page served (HTTP 200)" if k == "page" else f"first {k} answer"
        print(f"  {label:28s} {statistics.median(xs):6.1f}   runs: {', '.join(f'{x:.1f}' for x in xs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
