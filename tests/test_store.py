"""The feedback store against SQLite and a real PostgreSQL: migrations, concurrency, crashes, odd text, dead DB."""
import json
import multiprocessing as mp
import os
import signal
import time

import pytest

from feedback.store import FeedbackStore, StoreInputError

ODD = [
    "it's \"quoted\" `back` \\slash",
    "'); DROP TABLE answers; --",
    "Robert'); DELETE FROM feedback WHERE ('1'='1",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇪🇸",
    "مرحبا بالعالم — עברית — 中文 — ру́сский",
    "<script>alert(1)</script> [x](javascript:alert(1)) ![i](http://e/x.png)",
    "=HYPERLINK(\"http://x\")",
    "tab\tnew\nline\r\nend \u200b\ufeff",
    "x" * 4_000,  # the longest correction or comment kept (MAX_FEEDBACK_CHARS)
]


def _answer(store, sid="s1", text="hello", task="qa"):
    ack = store.record_answer(task=task, input_text=text, output=f"answer to {text[:20]}", model_version="v1",
                              session_id=sid, prompt=f"<prompt>{text}", messages=[{"role": "user", "content": text}],
                              settings={"temperature": 0.0})
    assert ack.stored
    return ack.id


def test_migration_creates_schema_and_is_idempotent(store):
    store.migrate()
    assert store.count() == (0, 0)
    from sqlalchemy import inspect

    assert {"answers", "feedback", "alembic_version"} <= set(inspect(store.engine).get_table_names())


def test_feedback_links_to_its_answer_and_sessions_are_private(store):
    a = _answer(store, "alice")
    b = _answer(store, "bob")
    store.add_feedback(a, "alice", rating=1)
    store.add_feedback(a, "alice", correction="a better answer", comment="close")
    store.add_feedback(b, "bob", rating=-1)
    mine = store.session_feedback("alice")  # one row per answer: its current rating, correction and comment
    assert [(r["answer_id"], r["rating"], r["correction"], r["comment"]) for r in mine] == \
        [(a, 1, "a better answer", "close")]
    assert all(r["session_id"] == "alice" for r in mine)
    rows = {r["id"]: r for r in store.export_rows()}
    assert rows[a]["rating"] == 1 and rows[a]["correction"] == "a better answer" and rows[b]["rating"] == -1
    store.add_feedback(a, "alice", rating=-1)  # a new rating replaces the old one; history stays in the table
    assert [r["rating"] for r in store.session_feedback("alice")] == [-1] and store.count() == (2, 4)
    assert {r["id"]: r for r in store.export_rows()}[a]["rating"] == -1


def test_bad_feedback_is_refused_with_a_message(store):
    a = _answer(store)
    with pytest.raises(StoreInputError, match="NUL"):
        store.add_feedback(a, "s1", correction="bad\x00byte")
    with pytest.raises(StoreInputError, match="rating|Rating"):
        store.add_feedback(a, "s1", rating=5)
    with pytest.raises(StoreInputError, match="Give a rating"):
        store.add_feedback(a, "s1", correction="   ")
    with pytest.raises(StoreInputError, match="too long"):
        store.add_feedback(a, "s1", comment="x" * 4_001)
    with pytest.raises(StoreInputError, match="unknown"):
        store.add_feedback("0" * 32, "s1", rating=1)
    assert store.count() == (1, 0)


@pytest.mark.parametrize("text", ODD, ids=range(len(ODD)))
def test_odd_text_is_stored_and_exported_byte_for_byte(store, tmp_path, text):
    from feedback.export import write_export
    from feedback.store import MAX_INPUT_CHARS

    a = _answer(store, text=text)
    store.add_feedback(a, "s1", rating=-1, correction=text, comment=text)
    row = store.export_rows()[0]
    assert row["input_text"] == text and row["correction"] == text and row["comment"] == text
    write_export([row], tmp_path / "out")
    sft = [json.loads(line) for line in open(tmp_path / "out" / "sft.jsonl", encoding="utf-8")]
    assert sft[0]["completion"] == text and sft[0]["input"] == text
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "out" / "sft.parquet").to_pylist()[0]["completion"] == text
    if len(text) > 1000:  # the longest stored input is kept whole too; one character more is refused
        def record(n):
            return store.record_answer(task="qa", input_text="y" * n, output="o", model_version="v", session_id="s")

        assert store.answer(record(MAX_INPUT_CHARS).id)["input_text"] == "y" * MAX_INPUT_CHARS
        with pytest.raises(StoreInputError, match="too long"):
            record(MAX_INPUT_CHARS + 1)


def _writer(url, spool, n, wid, q):
    store = FeedbackStore(url, spool, salt="w")
    ok = 0
    for i in range(n):
        a = store.record_answer(task="qa", input_text=f"w{wid}-{i}", output="o", model_version="v", session_id=f"w{wid}")
        f = store.add_feedback(a.id, f"w{wid}", rating=1 if i % 2 else -1, comment=f"{wid}:{i}")
        ok += a.stored and f.stored
    q.put(ok)


def test_16_concurrent_writers_x_500_lose_nothing(store, db_url, tmp_path):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    store.engine.dispose()  # no pooled connection may cross the fork
    procs = [ctx.Process(target=_writer, args=(db_url, tmp_path / "spool.jsonl", 500, w, q)) for w in range(16)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
        assert p.exitcode == 0
    assert sum(q.get() for _ in procs) == 16 * 500  # every write reached the database, none spooled
    assert store.count() == (8000, 8000)
    comments = {r["comment"] for r in store.export_rows()}
    assert comments == {f"{w}:{i}" for w in range(16) for i in range(500)}


def _killable(url, spool, log_path):
    store = FeedbackStore(url, spool, salt="k")
    with open(log_path, "a") as log:
        i = 0
        while True:
            ack = store.record_answer(task="qa", input_text=f"k{i}" * 50, output="o" * 500, model_version="v",
                                      session_id="k")
            log.write(ack.id + "\n")  # written only after the commit returned
            log.flush()
            i += 1


def test_sigkill_mid_write_leaves_a_sound_database(store, db_url, tmp_path):
    ctx = mp.get_context("fork")
    log_path = tmp_path / "committed.txt"
    store.engine.dispose()
    p = ctx.Process(target=_killable, args=(db_url, tmp_path / "spool.jsonl", log_path))
    p.start()
    deadline = time.time() + 60
    while time.time() < deadline and (not log_path.exists() or log_path.read_text().count("\n") < 200):
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    committed = [x for x in log_path.read_text().splitlines() if len(x) == 32]
    assert len(committed) >= 200
    fresh = FeedbackStore(db_url, tmp_path / "spool2.jsonl")
    fresh.migrate()
    with fresh.engine.connect() as c:
        if db_url.startswith("sqlite"):
            assert c.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        ids = {r[0] for r in c.exec_driver_sql("SELECT id FROM answers")}
    assert set(committed) <= ids


def test_dead_database_keeps_feedback_and_replays_it(store, db_url, tmp_path):
    a = _answer(store, "s")
    dead = FeedbackStore("postgresql+psycopg://nobody@127.0.0.1:9/none", tmp_path / "spool.jsonl")
    ack_a = dead.record_answer(task="qa", input_text="while down", output="still answered", model_version="v",
                               session_id="s")
    ack_f = dead.add_feedback(ack_a.id, "s", rating=1, correction="kept")
    ack_g = dead.add_feedback(a, "s", rating=-1)
    assert not ack_a.stored and not ack_f.stored and not ack_g.stored and "unavailable" in ack_f.message
    assert dead.spool.pending() == 3
    # the database is back (same spool on the live store): the next write replays the spool first, in order
    store.add_feedback(a, "s", comment="after recovery")
    assert store.spool.pending() == 0
    rows = {r["id"]: r for r in store.export_rows()}
    assert rows[ack_a.id]["correction"] == "kept" and rows[ack_a.id]["input_text"] == "while down"
    assert rows[a]["rating"] == -1 and rows[a]["comment"] == "after recovery"
    assert store.flush_spool() == 0  # idempotent


def test_admin_can_erase_a_session(store):
    a = _answer(store, "gone")
    store.add_feedback(a, "gone", rating=1)
    _answer(store, "kept")
    assert store.delete_session("gone") == 1
    assert store.count() == (1, 0)


def test_only_the_answers_session_may_rate_it_and_my_feedback_shows_only_own_answers(store):
    a = _answer(store, "alice", text="my account number is 1234")
    with pytest.raises(StoreInputError, match="unknown"):  # the same refusal as a missing id
        store.add_feedback(a, "mallory", rating=-1, correction="overwritten label")
    assert store.count() == (1, 0) and store.session_feedback("mallory") == []
    store.add_feedback(a, "admin-session", rating=-1, admin=True)  # an admin may
    assert store.session_feedback("admin-session") == []  # but it is not the admin's answer to list


def test_spooled_feedback_on_another_sessions_answer_is_rejected_at_replay(store, tmp_path):
    a = _answer(store, "alice")
    dead = FeedbackStore("postgresql+psycopg://nobody@127.0.0.1:9/none", store.spool.path)
    assert not dead.add_feedback(a, "mallory", rating=-1).stored  # the database was down: no check possible
    assert store.flush_spool() == 0 and store.spool.pending() == 0
    assert store.count() == (1, 0) and store.spool.rejected.exists()


def test_erase_removes_the_sessions_rows_feedback_on_them_and_spooled_copies(store):
    a = _answer(store, "gone")
    store.add_feedback(a, "admin", rating=1, admin=True)  # someone else's feedback on the erased answer
    store.spool.append({"type": "feedback", "id": "f" * 32, "answer_id": a, "session_id": "gone", "rating": 1,
                        "created_at": "2026-11-30T00:00:00+00:00"})
    store.spool.append({"type": "answer", "id": "k" * 32, "session_id": "kept", "created_at": "x"})
    assert store.delete_session("gone") == 1
    assert store.count() == (0, 0) and store.spool.pending() == 1


def test_retention_erases_old_answers_and_their_feedback(store):
    from datetime import timedelta

    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from feedback.store import Answer, now

    old, new = _answer(store, "s", text="old"), _answer(store, "s", text="new")
    store.add_feedback(old, "s", rating=1)
    with Session(store.engine) as s, s.begin():
        s.execute(update(Answer).where(Answer.id == old).values(created_at=now() - timedelta(days=31)))
    assert store.purge_older_than(30) == 1
    assert store.answer(old) is None and store.answer(new) is not None and store.count() == (1, 0)


def test_recent_answers_are_a_tabs_latest_first_without_prompts(store):
    ids = [_answer(store, text=f"question {i}") for i in range(3)]
    _answer(store, text="another tab", task="summarize")
    rows = store.recent_answers("qa", limit=2)
    assert [r["id"] for r in rows] == ids[::-1][:2]
    assert set(rows[0]) == {"id", "task", "input_text", "output", "created_at"}
    assert rows[0]["input_text"] == "question 2" and rows[0]["task"] == "qa"
    assert store.recent_answers("translate") == []
