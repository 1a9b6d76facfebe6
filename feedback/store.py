"""The feedback store: what the app served and what users said of it (SQLAlchemy; SQLite or PostgreSQL).

When the database cannot be reached, records go to an fsync'ed spool file and are replayed later:
the user is told, the answer still works, and nothing is silently dropped.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, SmallInteger, String, Text, create_engine, event, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

log = logging.getLogger(__name__)

# Characters kept per stored field: a user's input is already cut to 20,000 characters by the task (the prompt
# adds the task's template and any retrieved context); corrections and comments are a few sentences.
MAX_INPUT_CHARS = 100_000
MAX_FEEDBACK_CHARS = 4_000
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class StoreInputError(ValueError):
    """Feedback that cannot be stored as given; the message is shown to the user."""


UNKNOWN_ANSWER = "That answer is unknown: ask again, then rate the new answer."


class NotYours(ValueError):
    """Feedback on an answer served to another session: refused exactly like an unknown answer."""


class Base(DeclarativeBase):
    pass


class Answer(Base):
    __tablename__ = "answers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    task: Mapped[str] = mapped_column(String(64), index=True)
    input_text: Mapped[str] = mapped_column(Text)
    messages: Mapped[Any] = mapped_column(JSON, nullable=True)  # chat messages sent to the model
    prompt: Mapped[str] = mapped_column(Text, default="")  # the exact prompt text
    output: Mapped[str] = mapped_column(Text, default="")
    probabilities: Mapped[Any] = mapped_column(JSON, nullable=True)
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    settings: Mapped[Any] = mapped_column(JSON, nullable=True)  # decoding settings and task options
    session_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    answer_id: Mapped[str] = mapped_column(ForeignKey("answers.id", ondelete="CASCADE"), index=True)
    rating: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)  # +1 up, -1 down
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)  # classifiers: the correct label
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    session_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


@dataclass
class Ack:
    stored: bool  # False: spooled locally because the database is unreachable
    message: str
    id: str = ""


def now() -> datetime:
    return datetime.now(timezone.utc)


def anonymous_id(session_hash: str | None, salt: str) -> str:
    """A stable, anonymous id for a browser session (never an IP address)."""
    return hashlib.sha256(f"{salt}:{session_hash or 'anonymous'}".encode()).hexdigest()[:32]


def check_text(name: str, value: str | None, limit: int = MAX_INPUT_CHARS) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise StoreInputError(f"{name} must be text.")
    if "\x00" in value:
        raise StoreInputError(f"{name} contains a NUL byte, which cannot be stored. Remove it and try again.")
    if len(value) > limit:
        raise StoreInputError(f"{name} is too long ({len(value):,} characters; the limit is {limit:,}).")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise StoreInputError(f"{name} contains invalid Unicode (lone surrogates).") from None
    return value


def make_engine(url: str):
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _):  # WAL: readers never block the writer; a killed process loses no commit
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA secure_delete=ON")  # an erased row is overwritten on disk, not just unlinked
            cur.close()

        return engine
    connect_args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=16, connect_args=connect_args)


def migrate(engine) -> None:
    """Bring the schema to the newest Alembic revision (the app does this on start)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Spool:
    """Append-only JSONL of records the database did not take; fsync'ed, locked across processes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rejected = self.path.with_suffix(".rejected.jsonl")
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def _rewrite(self, keep_lines) -> None:
        """Under both locks: read every line, write back only `keep_lines(lines)`, fsync'ed."""
        with self._lock:
            if not self.path.exists():
                return
            with open(self.path, "r+", encoding="utf-8") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                left = keep_lines([ln for ln in f.read().splitlines() if ln.strip()])
                f.seek(0)
                f.truncate()
                f.write("".join(x + "\n" for x in left))
                f.flush()
                os.fsync(f.fileno())

    def remove(self, match) -> int:
        """Drop every spooled record for which `match(record)` is true (an erased session's)."""
        removed = [0]

        def keep(lines):
            def matches(ln):
                try:
                    return match(json.loads(ln))
                except ValueError:
                    return False
            kept = [ln for ln in lines if not matches(ln)]
            removed[0] = len(lines) - len(kept)
            return kept

        self._rewrite(keep)
        return removed[0]

    def pending(self) -> int:
        try:
            with open(self.path, encoding="utf-8") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def drain(self, apply) -> int:
        """Apply every spooled record (idempotent by id); keep the ones that still fail."""
        done = [0]

        def keep(lines):
            left = []
            for i, ln in enumerate(lines):
                try:
                    apply(json.loads(ln))
                    done[0] += 1
                except (IntegrityError, NotYours):  # can never be stored (feedback on an unknown or other's answer)
                    log.error("spool line %d can never be stored; moved to %s", i, self.rejected)
                    with open(self.rejected, "a", encoding="utf-8") as r:
                        r.write(ln + "\n")
                except SQLAlchemyError:
                    return left + lines[i:]  # database gone again: keep this and the rest, in order
                except ValueError:
                    log.error("spool line %d is not valid JSON; kept aside", i)
                    left.append(ln)
            return left

        self._rewrite(keep)
        return done[0]


class FeedbackStore:
    """Records answers and feedback. No model or UI knowledge: rows in, rows out."""

    def __init__(self, url: str, spool_path: Path, salt: str = ""):
        self.url = url
        self.engine = make_engine(url)
        self.spool = Spool(spool_path)
        self.salt = salt or os.environ.get("NLPAPP_SESSION_SALT", "") or uuid.uuid4().hex
        self._migrated = False

    # -- schema --------------------------------------------------------------------------------------
    def migrate(self) -> None:
        migrate(self.engine)
        self._migrated = True

    def healthy(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except SQLAlchemyError:
            return False

    def session_id(self, session_hash: str | None) -> str:
        return anonymous_id(session_hash, self.salt)

    # -- writes ----------------------------------------------------------------------------------------
    def _apply(self, record: dict) -> None:
        kind = record["type"]
        model = Answer if kind == "answer" else Feedback
        columns = {c.key for c in model.__table__.columns}
        row = {k: v for k, v in record.items() if k in columns}  # spool lines of older versions may carry more
        row["created_at"] = datetime.fromisoformat(row["created_at"]) if isinstance(row["created_at"], str) \
            else row["created_at"]
        with Session(self.engine) as s, s.begin():
            if s.get(model, row["id"]) is not None:  # replays are idempotent
                return
            if model is Feedback:  # only the session an answer was served to may rate or correct it
                answer = s.get(Answer, row["answer_id"])
                if answer is not None and answer.session_id != row["session_id"] and not record.get("admin"):
                    raise NotYours(row["answer_id"])
            s.add(model(**row))

    def _write(self, record: dict, what: str) -> Ack:
        try:
            if not self._migrated:  # the database was down at start: bring its schema up first
                self.migrate()
            if self.spool.pending():
                self.flush_spool()
            self._apply(record)
            return Ack(True, f"Thanks, your {what} was saved.", record["id"])
        except (IntegrityError, NotYours):
            raise StoreInputError(UNKNOWN_ANSWER) from None
        except SQLAlchemyError as e:
            log.error("database unavailable (%s): %s spooled locally", type(e).__name__, what)
            self.spool.append({**record, "created_at": record["created_at"].isoformat()})
            return Ack(False, f"The feedback database is unavailable right now: your {what} was kept on the "
                              "server and will be stored when the database is back.", record["id"])

    def record_answer(self, *, task: str, input_text: str, output: str, model_version: str, session_id: str,
                      prompt: str = "", messages: list | None = None, probabilities: dict | None = None,
                      settings: dict | None = None, answer_id: str | None = None) -> Ack:
        record = dict(type="answer", id=answer_id or uuid.uuid4().hex, task=task,
                      input_text=check_text("Input", input_text), output=check_text("Answer", output) or "",
                      prompt=check_text("Prompt", prompt) or "", messages=messages, probabilities=probabilities,
                      model_version=model_version[:128], settings=settings, session_id=session_id,
                      created_at=now())
        return self._write(record, "answer")

    def add_feedback(self, answer_id: str, session_id: str, rating: int | None = None,
                     correction: str | None = None, comment: str | None = None, admin: bool = False) -> Ack:
        """Feedback on an answer served to `session_id` (`admin`: on any answer). Another session's answer is
        refused with the same message as an unknown one, so ids reveal nothing."""
        if not answer_id or not isinstance(answer_id, str) or len(answer_id) > 32:
            raise StoreInputError("There is no answer to give feedback on yet.")
        if isinstance(rating, bool) or rating not in (None, 1, -1):
            raise StoreInputError("Rating must be up (1) or down (-1).")
        correction = check_text("Correction", correction, MAX_FEEDBACK_CHARS)
        comment = check_text("Comment", comment, MAX_FEEDBACK_CHARS)
        correction = correction if correction and correction.strip() else None
        comment = comment if comment and comment.strip() else None
        if rating is None and correction is None and comment is None:
            raise StoreInputError("Give a rating, a correction or a comment.")
        record = dict(type="feedback", id=uuid.uuid4().hex, answer_id=answer_id, rating=rating,
                      correction=correction, comment=comment, session_id=session_id, created_at=now())
        if admin:
            record["admin"] = True
        return self._write(record, "feedback")

    def flush_spool(self) -> int:
        n = self.spool.drain(self._apply)
        if n:
            log.info("stored %d spooled records", n)
        return n

    # -- reads -----------------------------------------------------------------------------------------
    def answer(self, answer_id: str) -> dict | None:
        with Session(self.engine) as s:
            a = s.get(Answer, answer_id)
            return _as_dict(a) if a else None

    def session_feedback(self, session_id: str, limit: int = 200) -> list[dict]:
        """A user's own feedback on their own answers, one row per answer, newest first: its current rating,
        correction and comment (the newest of each; a 👎 after a 👍 replaces it). Every earlier row stays in
        the table for the export's history. Nobody reads another session's rows."""
        q = (select(Feedback, Answer).join(Answer, Feedback.answer_id == Answer.id)
             .where(Feedback.session_id == session_id, Answer.session_id == session_id)
             .order_by(Feedback.created_at.desc(), Feedback.id.desc()).limit(limit * 10))
        merged: dict[str, dict] = {}
        with Session(self.engine) as s:
            for f, a in s.execute(q):  # newest first: the first value seen of each kind is the current one
                row = merged.get(a.id)
                if row is None:
                    if len(merged) == limit:
                        continue
                    row = merged[a.id] = {**_as_dict(a, prefix="answer_"), **_as_dict(f)}
                    continue
                for k in ("rating", "correction", "comment"):
                    if row[k] is None:
                        row[k] = getattr(f, k)
        return list(merged.values())

    def recent_answers(self, task: str, limit: int = 500) -> list[dict]:
        """A tab's latest answers, newest first: id, task, input_text, output, created_at (the Admin tab's
        follow-up list reads them; prompts and settings are left in the database)."""
        q = (select(Answer.id, Answer.task, Answer.input_text, Answer.output, Answer.created_at)
             .where(Answer.task == task).order_by(Answer.created_at.desc(), Answer.id).limit(limit))
        with Session(self.engine) as s:
            return [dict(r._mapping) for r in s.execute(q)]

    def export_rows(self, task: str | None = None, since: datetime | None = None, until: datetime | None = None,
                    model_version: str | None = None) -> list[dict]:
        """Every answer that has feedback, joined with its newest feedback of each kind."""
        q = select(Answer, Feedback).join(Feedback, Feedback.answer_id == Answer.id)
        if task:
            q = q.where(Answer.task == task)
        if since:
            q = q.where(Answer.created_at >= since)
        if until:
            q = q.where(Answer.created_at < until)
        if model_version:
            q = q.where(Answer.model_version == model_version)
        q = q.order_by(Answer.created_at, Feedback.created_at, Feedback.id)
        merged: dict[str, dict] = {}
        with Session(self.engine) as s:
            for a, f in s.execute(q):
                row = merged.setdefault(a.id, {**_as_dict(a), "rating": None, "correction": None,
                                               "comment": None, "feedback_at": None})
                for k in ("rating", "correction", "comment"):  # newest non-empty value wins
                    if getattr(f, k) is not None:
                        row[k] = getattr(f, k)
                row["feedback_at"] = f.created_at
        return list(merged.values())

    def count(self) -> tuple[int, int]:
        from sqlalchemy import func

        with Session(self.engine) as s:
            return (s.scalar(select(func.count()).select_from(Answer)),
                    s.scalar(select(func.count()).select_from(Feedback)))

    # -- admin -----------------------------------------------------------------------------------------
    def delete_session(self, session_id: str) -> int:
        """Erase one session's answers and feedback (a user's request to be forgotten): the rows, the feedback
        others left on them, and any spooled copy. SQLite overwrites erased rows (secure_delete)."""
        n = self._erase(Answer.session_id == session_id, also=Feedback.session_id == session_id)
        self.spool.remove(lambda r: r.get("session_id") == session_id)
        return n

    def _erase(self, answers, also=None) -> int:
        """In one transaction: the answers matching `answers`, all feedback on them, and the feedback matching
        `also`; returns how many answers went."""
        from sqlalchemy import delete

        with Session(self.engine) as s, s.begin():
            on_them = Feedback.answer_id.in_(select(Answer.id).where(answers))
            s.execute(delete(Feedback).where(on_them if also is None else on_them | also))
            return s.execute(delete(Answer).where(answers)).rowcount

    def purge_older_than(self, days: float) -> int:
        """Erase answers (and their feedback) served more than `days` ago; returns how many answers went."""
        from datetime import timedelta

        n = self._erase(Answer.created_at < now() - timedelta(days=days))
        if n:
            log.info("retention: erased %d answers older than %g days", n, days)
        return n


def _as_dict(obj, prefix: str = "") -> dict:
    return {prefix + c.key: getattr(obj, c.key) for c in obj.__table__.columns}
