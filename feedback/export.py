"""Write collected feedback as training data: SFT, chat SFT, preference pairs, KTO rows and a CSV of all.

Column layouts follow TRL's trainers: SFT `prompt`/`completion` (and conversational `messages`),
DPO `prompt`/`chosen`/`rejected`, KTO `prompt`/`completion`/`label`. Every file also carries `task`,
`input`, `answer_id`, `model_version` and `settings` (the options the answer was made with, JSON) so a task's
trainer can pick its own rows and prompt them as they were prompted.
"""
from __future__ import annotations

import csv
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from feedback.store import FeedbackStore, StoreInputError

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value) -> str:
    """Spreadsheets run cells that start with = + - @ as formulas: prefix those with a quote."""
    text = "" if value is None else (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                                                      default=str))
    return "'" + text if text.startswith(FORMULA_START) else text


@dataclass
class ExportFilter:
    task: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    model_version: str | None = None


def _assistant_text(row: dict) -> str:
    return row["output"] if row["output"] else (row.get("correction") or "")


def build_sets(rows: list[dict]) -> dict[str, list[dict]]:
    """Training sets from joined answer+feedback rows (see FeedbackStore.export_rows)."""
    sft, chat, pref, kto = [], [], [], []
    for r in rows:
        # settings: the task options and decoding settings the answer was made with (a translation's direction,
        # the entries a customer-service answer was shown), as JSON text: retraining prompts as the model was
        # prompted (export.train.load_extra), and one column type for every task in Parquet
        meta = {"task": r["task"], "input": r["input_text"], "answer_id": r["id"], "model_version": r["model_version"],
                "settings": json.dumps(r.get("settings") or {}, ensure_ascii=False, sort_keys=True, default=str)}
        prompt = r["prompt"] or r["input_text"]
        messages = [m for m in (r.get("messages") or []) if m.get("role") != "assistant"] or \
            [{"role": "user", "content": r["input_text"]}]
        correction = r.get("correction")
        good = correction if correction else (r["output"] if r.get("rating") == 1 else None)
        if good:
            sft.append({"prompt": prompt, "completion": good, **meta})
            chat.append({"messages": messages + [{"role": "assistant", "content": good}], **meta})
        if correction and correction != r["output"] and r["output"]:
            pref.append({"prompt": prompt, "chosen": correction, "rejected": r["output"], **meta})
        if r.get("rating") in (1, -1) and r["output"]:
            kto.append({"prompt": prompt, "completion": r["output"], "label": r["rating"] == 1, **meta})
    return {"sft": sft, "sft_messages": chat, "preference": pref, "kto": kto}


def write_export(rows: list[dict], out_dir: Path) -> dict:
    """Write each non-empty set as JSONL and Parquet, and all.csv; returns {file name: row count}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    for name, items in build_sets(rows).items():
        if not items:
            continue
        with open(out_dir / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for item in items:
                f.write(json.dumps(item, ensure_ascii=False) + "\n")
        written[f"{name}.jsonl"] = len(items)
        pq.write_table(pa.Table.from_pylist(items), out_dir / f"{name}.parquet")
        written[f"{name}.parquet"] = len(items)
    columns = ["id", "task", "created_at", "model_version", "session_id", "input_text", "output", "probabilities",
               "rating", "correction", "comment", "feedback_at", "settings", "prompt"]
    with open(out_dir / "all.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([csv_safe(r.get(c).isoformat() if isinstance(r.get(c), datetime) else r.get(c))
                        for c in columns])
    written["all.csv"] = len(rows)
    (out_dir / "export.json").write_text(json.dumps({"files": written, "rows": len(rows)}, indent=1))
    return written


def export_feedback(store, out_dir: Path, flt: ExportFilter = ExportFilter()) -> dict:
    rows = store.export_rows(flt.task, flt.since, flt.until, flt.model_version)
    return write_export(rows, out_dir)


def parse_time(value: str | None, name: str) -> datetime | None:
    if not value or not value.strip():
        return None
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise StoreInputError(f"{name} must be a date like 2026-11-25 or 2026-11-25T14:00") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t


def export_zip(store: FeedbackStore, task: str | None, since: str | None, until: str | None,
               model_version: str | None, keep_s: float = 120.0) -> tuple[Path, dict]:
    """Export feedback with filters into a zip file; returns (path, {file: rows}). The unzipped files go at
    once; the zip itself `keep_s` seconds later (time for the web server to copy it out for the download)."""
    import threading

    flt = ExportFilter(task=task or None, since=parse_time(since, "From"), until=parse_time(until, "Until"),
                       model_version=(model_version or "").strip() or None)
    out = Path(tempfile.mkdtemp(prefix="feedback-export-"))
    try:
        written = export_feedback(store, out / "feedback", flt)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        archive = shutil.make_archive(str(out / f"feedback-{stamp}"), "zip", out / "feedback")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(out / "feedback", ignore_errors=True)
    timer = threading.Timer(keep_s, shutil.rmtree, args=(out,), kwargs={"ignore_errors": True})
    timer.daemon = True
    timer.start()
    return Path(archive), written
