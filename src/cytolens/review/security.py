"""The review app's guards, as ASGI middleware: an access token, a request body limit and safe response headers.

- :class:`TokenGuard`: with a token set, every request needs it, in the ``X-Cytolens-Token`` header or the
  ``cytolens_token`` cookie; the page sets the cookie from ``/?token=...`` (and drops it from the address).
  A missing token gives 401, a wrong one 403.
- :class:`BodyLimit`: a request whose body is over the limit gets 413, before anything parses it: first by its
  ``Content-Length``, then by the bytes actually streamed (a chunked body states no length).
- :class:`SecurityHeaders`: a Content-Security-Policy that allows nothing but the app itself (no inline script,
  no other origin), and no MIME sniffing, referrer or framing.
"""

from __future__ import annotations

import ipaddress
import secrets
from urllib.parse import parse_qs

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_HEADER = "x-cytolens-token"
"""The request header that may carry the access token."""
TOKEN_COOKIE = "cytolens_token"
"""The cookie that carries the access token for the page's own requests."""
DEFAULT_MAX_BODY = 1_000_000
"""The largest request body accepted by default, in bytes."""
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
"""The page may load its own script, style and images, and nothing else."""
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
"""Host names that reach only this machine."""


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves only this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh random access token (URL-safe, 32 characters)."""
    return secrets.token_urlsafe(24)


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


class TokenGuard:
    """Refuse every request that does not carry the access token (ASGI middleware).

    Args:
        app: The application guarded.
        token: The token required.

    """

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token

    def _matches(self, given: str) -> bool:
        return secrets.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        if scope["path"] == "/" and query:
            if not self._matches(query[0]):
                await _error(403, "wrong access token")(scope, receive, send)
                return
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        # starlette's lenient parser: a malformed cookie of another local app must not hide ours
        given = headers.get(TOKEN_HEADER) or cookie_parser(headers.get("cookie", "")).get(TOKEN_COOKIE)
        if given is None:
            await _error(401, "an access token is required (open the address the review command printed)")(
                scope, receive, send
            )
            return
        if not self._matches(given):
            await _error(403, "wrong access token")(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Answer 413 to a request whose body is larger than ``max_body`` bytes, before the app reads it (ASGI middleware).

    The body is read here (up to the limit) and handed on whole, so the app never sees part of an oversized one.

    Args:
        app: The application guarded.
        max_body: The largest body accepted, in bytes.

    """

    def __init__(self, app: ASGIApp, max_body: int):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = _error(413, f"the request body is larger than {self.max_body} bytes")
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await too_large(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_body:
                await too_large(scope, receive, send)
                return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class SecurityHeaders:
    """Add the Content-Security-Policy and related headers to every response (ASGI middleware)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Frame-Options"] = "DENY"
            await send(message)

        await self.app(scope, receive, send_with_headers)
