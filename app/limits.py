"""Per-session rate limiting of expensive generations (a sliding window, in memory, thread-safe)."""
from __future__ import annotations

import threading
import time
from collections import deque


class RateLimited(RuntimeError):
    """Too many requests from one session; the message says how long to wait."""


class RateLimiter:
    def __init__(self, per_minute: int, window_s: float = 60.0, max_sessions: int = 100_000):
        self.per_window, self.window = per_minute, window_s
        self.max_sessions = max_sessions
        self._hits: dict[str, deque] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        if self.per_window <= 0:
            return
        now = time.monotonic()
        with self._lock:
            q = self._hits.setdefault(key, deque())
            while q and now - q[0] > self.window:
                q.popleft()
            if len(q) >= self.per_window:
                wait = self.window - (now - q[0])
                raise RateLimited(f"Too many requests from this session: please wait {wait:.0f} s and try again.")
            q.append(now)
            if len(self._hits) > self.max_sessions:  # forget idle sessions so memory stays bounded
                for k in [k for k, v in self._hits.items() if not v or now - v[-1] > self.window]:
                    del self._hits[k]
