"""Admin token checks, time parsing and the admin export zip."""
import zipfile

import pytest

from app.feedback import AdminRefused, check_admin, record_reply
from feedback.export import export_zip, parse_time
from serving.service import Reply
from feedback.store import StoreInputError
from tests.conftest import ADMIN_TOKEN


def test_admin_token_is_required_and_checked():
    with pytest.raises(AdminRefused, match="disabled"):
        check_admin("", "anything")
    with pytest.raises(AdminRefused, match="Wrong"):
        check_admin(ADMIN_TOKEN, "guess")
    with pytest.raises(AdminRefused, match="Wrong"):
        check_admin(ADMIN_TOKEN, None)
    check_admin(ADMIN_TOKEN, ADMIN_TOKEN)
    check_admin("ünï©ødé", "ünï©ødé")


def test_parse_time():
    assert parse_time("", "From") is None
    assert parse_time("2026-11-25", "From").tzinfo is not None
    with pytest.raises(StoreInputError, match="From"):
        parse_time("yesterday", "From")


def test_export_zip_contains_every_file(store):
    reply = Reply(task="qa", text="hello", input_text="hi", prompt="P", version="v1", done=True)
    answer_id, note = record_reply(store, reply, "s")
    assert answer_id and not note
    store.add_feedback(answer_id, "s", rating=-1, correction="Hello! How can I help?")
    path, written = export_zip(store, "qa", "", "", "")
    names = set(zipfile.ZipFile(path).namelist())
    assert {"sft.jsonl", "sft.parquet", "preference.jsonl", "kto.parquet", "all.csv"} <= names
    assert written["all.csv"] == 1


def test_record_reply_with_a_dead_database_still_returns_an_id(tmp_path):
    from feedback.store import FeedbackStore

    dead = FeedbackStore("postgresql+psycopg://nobody@127.0.0.1:9/none", tmp_path / "spool.jsonl")
    answer_id, note = record_reply(dead, Reply(task="qa", text="a", input_text="q", version="v"), "s")
    assert answer_id and "unavailable" in note and dead.spool.pending() == 1
