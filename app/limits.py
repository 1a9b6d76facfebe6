"""Rate limits a client cannot reset: per client address and kind of request, a global budget, and an
exponential back-off after failed admin-token attempts. In memory only; addresses are never stored."""
from __future__ import annotations

import math
import threading
import time
from collections import deque


class RateLimited(RuntimeError):
    """Too many requests; the message says how long to wait."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


def client_address(request, trusted_proxy_hops: int = 0) -> str:
    """The address a request came from. Behind `trusted_proxy_hops` proxies, the entry that many places from
    the end of X-Forwarded-For (what the nearest trusted proxy saw); the header is ignored otherwise."""
    if request is None:
        return "unknown"
    if trusted_proxy_hops > 0:
        forwarded = [a.strip() for a in (request.headers.get("x-forwarded-for") or "").split(",") if a.strip()]
        if len(forwarded) >= trusted_proxy_hops:
            return forwarded[-trusted_proxy_hops]
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


class Window:
    """Sliding one-window counter per key (thread-safe, bounded number of keys)."""

    def __init__(self, limit: int, window_s: float = 60.0, max_keys: int = 100_000):
        self.limit, self.window, self.max_keys = limit, window_s, max_keys
        self._hits: dict[str, deque] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float) -> float:
        """Count one request for `key`; returns 0, or the seconds to wait when the window is full."""
        if self.limit <= 0:
            return 0.0
        with self._lock:
            q = self._hits.setdefault(key, deque())
            while q and now - q[0] > self.window:
                q.popleft()
            if len(q) >= self.limit:
                return max(self.window - (now - q[0]), 1.0)
            q.append(now)
            if len(self._hits) > self.max_keys:  # forget idle keys so memory stays bounded
                for k in [k for k, v in self._hits.items() if not v or now - v[-1] > self.window]:
                    del self._hits[k]
            return 0.0


KIND_NAMES = {"generate": "generations", "classify": "classifications", "feedback": "feedback actions"}


class Limits:
    """One Window per kind of request (per address) and one for everything together (all addresses)."""

    def __init__(self, per_minute: dict[str, int], global_per_minute: int = 0, window_s: float = 60.0,
                 admin_base_delay_s: float = 1.0, admin_max_delay_s: float = 900.0):
        self.windows = {kind: Window(n, window_s) for kind, n in per_minute.items()}
        self.everything = Window(global_per_minute, window_s)
        self.admin_base, self.admin_max = admin_base_delay_s, admin_max_delay_s
        self._admin: dict[str, tuple[int, float]] = {}  # address -> (failures in a row, blocked until)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, s) -> "Limits":
        return cls({"generate": s.generations_per_minute, "classify": s.classifications_per_minute,
                    "feedback": s.feedback_per_minute}, s.global_requests_per_minute)

    def check(self, kind: str, address: str) -> None:
        now = time.monotonic()
        wait = self.windows[kind].take(address, now) if kind in self.windows else 0.0
        if wait:
            raise RateLimited(f"Too many {KIND_NAMES.get(kind, 'requests')} from your address: please wait "
                              f"{math.ceil(wait)} s and try again.", wait)
        wait = self.everything.take("*", now)
        if wait:
            raise RateLimited(f"The server is at its limit for all users right now: please try again in "
                              f"{math.ceil(wait)} s.", wait)

    # -- admin-token attempts: each failure doubles the wait before the next attempt is even checked ----------
    def admin_attempt(self, address: str) -> None:
        with self._lock:
            _, until = self._admin.get(address, (0, 0.0))
        wait = until - time.monotonic()
        if wait > 0:
            # rounded up: "wait 0 s" with 0.4 s left was refused again when taken at its word
            raise RateLimited(f"Too many wrong admin tokens: wait {math.ceil(wait)} s before the next attempt.", wait)

    def admin_failed(self, address: str) -> None:
        with self._lock:
            failures = self._admin.get(address, (0, 0.0))[0] + 1
            delay = min(self.admin_base * 2 ** (failures - 1), self.admin_max)
            self._admin[address] = (failures, time.monotonic() + delay)
            if len(self._admin) > 100_000:
                now = time.monotonic()
                for k in [k for k, (_, t) in self._admin.items() if t < now - self.admin_max]:
                    del self._admin[k]

    def admin_succeeded(self, address: str) -> None:
        with self._lock:
            self._admin.pop(address, None)
