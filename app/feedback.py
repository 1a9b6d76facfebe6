"""Glue between served replies and the feedback store: record answers, take ratings and corrections, admin."""
from __future__ import annotations

import hmac
import logging

from serving.service import Reply
from feedback.store import UNKNOWN_ANSWER, Ack, FeedbackStore, StoreInputError
from tasks import Task, TaskKind

log = logging.getLogger(__name__)


class AdminRefused(PermissionError):
    """Wrong or missing admin token; the message is shown as is."""


def record_reply(store: FeedbackStore | None, reply: Reply, session_id: str) -> tuple[str, str]:
    """Store a finished reply; returns (answer id, notice). Never raises: the answer matters more."""
    if store is None:
        return "", ""
    try:
        ack = store.record_answer(task=reply.task, input_text=reply.input_text, output=reply.text,
                                  model_version=reply.version, session_id=session_id, prompt=reply.prompt,
                                  messages=reply.messages, probabilities=reply.probabilities,
                                  settings={**reply.settings, **reply.options})
    except Exception:  # noqa: BLE001
        log.exception("could not record an answer")
        return "", "This answer could not be recorded, so it cannot be rated."
    return ack.id, ("" if ack.stored else "The feedback database is unavailable: your rating will be kept on the "
                                          "server and stored when it is back.")


def submit_feedback(store: FeedbackStore, tasks: dict[str, Task], answer_id: str, session_id: str,
                    rating: int | None = None, correction: str | None = None, comment: str | None = None) -> Ack:
    """Validate and store feedback on one answer. Raises StoreInputError with a message for the user."""
    if not answer_id:
        raise StoreInputError("There is no answer to give feedback on yet: submit some text first.")
    if isinstance(rating, str):
        rating = {"up": 1, "down": -1, "1": 1, "-1": -1, "": None}.get(rating.strip().lower(), rating)
    if isinstance(rating, float) and rating in (1.0, -1.0):
        rating = int(rating)
    if correction and isinstance(answer_id, str):
        answer = store.answer(answer_id) if store.healthy() else None
        if answer is not None and answer["session_id"] != session_id:
            raise StoreInputError(UNKNOWN_ANSWER)  # another session's answer: say no more than for a missing one
        task = tasks.get(answer["task"]) if answer else None
        if task is not None and task.kind == TaskKind.CLASSIFY and correction not in task.labels:
            raise StoreInputError(f"The correct label must be one of: {', '.join(task.labels)}.")
    return store.add_feedback(answer_id, session_id, rating=rating, correction=correction, comment=comment)


def usable_admin_token(configured: str) -> str:
    """The usable admin token: stripped, at least MIN_ADMIN_TOKEN_CHARS long; "" (admin off, reason logged)."""
    from config import MIN_ADMIN_TOKEN_CHARS

    token = (configured or "").strip()
    if configured and len(token) < MIN_ADMIN_TOKEN_CHARS:
        log.warning("admin actions are off: NLPAPP_ADMIN_TOKEN is %s (at least %d characters needed)",
                    "blank" if not token else "too short", MIN_ADMIN_TOKEN_CHARS)
        return ""
    return token


def check_admin(expected: str, given) -> None:
    """Constant-time token check; no token configured means admin actions are off."""
    if not expected:
        raise AdminRefused("Admin actions are disabled: set NLPAPP_ADMIN_TOKEN (16+ characters) on the server.")
    if not isinstance(given, str) or not given.strip():
        raise AdminRefused("Wrong admin token.")
    # surrogatepass: a lone surrogate is a wrong token like any other, not an encoding crash
    if not hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"), expected.encode("utf-8")):
        raise AdminRefused("Wrong admin token.")
