"""Security headers on every response (a pure ASGI middleware: it does not buffer the streamed answers)."""
from __future__ import annotations

import os

HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    # frame-ancestors only: Gradio's page needs inline scripts and styles, so a full CSP would break it
    (b"content-security-policy", b"frame-ancestors 'self' https://huggingface.co https://*.hf.space"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]
if not os.environ.get("SPACE_ID"):  # a Space page frames the app from another origin; CSP above allows it
    HEADERS.append((b"x-frame-options", b"SAMEORIGIN"))


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in HEADERS if h[0] not in present]
            await send(message)

        return await self.app(scope, receive, send_with_headers)
