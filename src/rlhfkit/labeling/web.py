"""What every route shares: who is asking (session cookie or API token), role and CSRF
checks, security headers, and the escaped templates.

Every page is rendered by Jinja2 with autoescaping on; model text is shown as plain text
(or, for a project that opts in, as CommonMark with raw HTML and images switched off and
unsafe link schemes refused). The CSP allows scripts and styles from this origin only:
no inline script, no eval, no plugins, no framing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

from rlhfkit.labeling import auth
from rlhfkit.labeling.store import LabelStore, UserInfo

HERE = Path(__file__).parent
SESSION_COOKIE = "rlhf_session"
LOGIN_COOKIE = "rlhf_login"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
MEDIA_CSP = "default-src 'none'; sandbox"
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


class SecurityHeaders:
    """ASGI middleware: the headers above on every response unless a route set its own."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in present]
                if b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _markdown() -> Any:
    from markdown_it import MarkdownIt

    # html=False: raw HTML (script, iframe, object, embed, ...) is shown as text; images off;
    # markdown-it's validateLink refuses javascript:, vbscript:, file: and data: links. A link
    # opens in a new tab (the task page and its timer stay) without handing it this window.
    md = MarkdownIt("commonmark", {"html": False}).disable("image")

    def link_open(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        tokens[idx].attrSet("target", "_blank")
        tokens[idx].attrSet("rel", "noopener noreferrer")
        return self.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    return md


def make_templates() -> Environment:
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    md = None

    def render_text(text: str, markdown: bool = False) -> Markup:
        nonlocal md
        if not markdown:
            return Markup('<div class="text">{}</div>').format(text)
        md = md or _markdown()
        return Markup('<div class="md">') + Markup(md.render(text)) + Markup("</div>")

    def render_instructions(text: str) -> Markup:
        """A project's instructions: Markdown written by an admin, rendered as model text is (no raw HTML)."""
        nonlocal md
        md = md or _markdown()
        return Markup('<div class="md instructions-body">') + Markup(md.render(text)) + Markup("</div>")

    env.globals.update(render_text=render_text, render_instructions=render_instructions)
    return env


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class Denied(Exception):
    """A role or CSRF check failed (403)."""


@dataclass(frozen=True)
class Who:
    user: UserInfo
    csrf: str | None  # None: authenticated by API token (no ambient credential, no CSRF)


def store_of(request: Request) -> LabelStore:
    return request.app.state.store


def who(request: Request) -> Who | None:
    if hasattr(request.state, "who"):
        return request.state.who
    store, found = store_of(request), None
    authz = request.headers.get("authorization", "")
    if authz.lower().startswith("bearer "):
        user = store.user_for_token(authz[7:].strip())
        found = Who(user, None) if user else None
    elif (cookie := request.cookies.get(SESSION_COOKIE)):
        got = store.session_user(cookie, idle_timeout(request), app_now(request))
        found = Who(got[0], got[1]) if got else None
        request.state.session_ended = got is None  # idle too long, past its lifetime, or signed out
    request.state.who = found
    return found


def app_now(request: Request) -> datetime:
    """The app's clock (`create_app(clock=...)`, injectable for tests) as naive UTC, as the store keeps times."""
    clock = getattr(request.app.state, "clock", time.time)
    return datetime.fromtimestamp(clock(), timezone.utc).replace(tzinfo=None)


def idle_timeout(request: Request) -> timedelta | None:
    """How long a browser session may go unused (`create_app(idle_timeout=...)`); None: no limit."""
    seconds = getattr(request.app.state, "idle_timeout", None)
    return timedelta(seconds=seconds) if seconds else None


def safe_next(url: str | None) -> str:
    """Only same-site paths: no scheme, no host, no `//evil` or `/\\evil`."""
    if not url or not url.startswith("/") or url.startswith("//") or url.startswith("/\\"):
        return "/"
    parts = urlsplit(url)
    return "/" if parts.scheme or parts.netloc else url


def page_user(request: Request) -> UserInfo:
    """Dependency of every page: a signed-in user, else a redirect to the login page."""
    w = who(request)
    if w is None:
        raise LoginRequired(request.url.path)
    return w.user


def admin_user(request: Request) -> UserInfo:
    user = page_user(request)
    if not user.is_admin:
        raise Denied("admins only")
    return user


def check_csrf(request: Request, token: str | None) -> None:
    """Every state-changing request made with the session cookie carries the session's
    CSRF token, and comes from this origin when the browser says where it comes from."""
    w = who(request)
    if w is None:
        raise LoginRequired("/")
    if w.csrf is None:
        return
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Denied("cross-origin request refused")
    if not auth.same(token, w.csrf):
        raise Denied("missing or wrong CSRF token; reload the page and try again")


def cookie_secure(request: Request) -> bool:
    """Secure cookies unless serving plain HTTP on loopback (or told otherwise)."""
    forced = request.app.state.secure_cookies
    if forced is not None:
        return forced
    return request.url.scheme == "https" or not auth.is_loopback(request.url.hostname)


def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    w = who(request)
    ctx.setdefault("user", w.user if w else None)
    ctx.setdefault("csrf", w.csrf if w else None)
    html = request.app.state.templates.get_template(name).render(request=request, **ctx)
    return HTMLResponse(html, status_code=status)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
