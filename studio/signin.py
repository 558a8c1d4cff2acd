"""With sign-in on, Gradio asks for it on every route that starts or reads work, but leaves two
open that act on work: `/gradio_api/cancel` (stops a queued or running event) and
`/gradio_api/heartbeat/<session>` (ending it ends that session, which stops its job). This ASGI
middleware asks for the sign-in there too, the way Gradio checks it (its session cookie)."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from starlette.middleware import Middleware
from starlette.responses import JSONResponse

GUARDED = ("/gradio_api/cancel", "/gradio_api/heartbeat/")


def signed_in(app, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request carries a session cookie Gradio issued at sign-in."""
    cookie = SimpleCookie()
    for name, value in headers:
        if name == b"cookie":
            try:
                cookie.load(value.decode("latin-1"))
            except CookieError:  # a malformed cookie header signs no one in
                return False
    tokens = getattr(app, "tokens", {})
    cookie_id = getattr(app, "cookie_id", "")
    names = (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}")
    return any(n in cookie and cookie[n].value in tokens for n in names)


class SignInRequired:
    """Refuse the guarded routes with 401 unless signed in (when the app has sign-in at all)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and any(g in scope["path"] for g in GUARDED):
            app = scope.get("app")
            if getattr(app, "auth", None) is not None and not signed_in(app, scope.get("headers", [])):
                refused = JSONResponse({"detail": {"error": "Not authenticated"}}, status_code=401)
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def app_kwargs() -> dict:
    """What Blocks.launch(app_kwargs=...) takes to add the middleware to Gradio's app."""
    return {"middleware": [Middleware(SignInRequired)]}
