"""The labeling web app (FastAPI, server-rendered): login, the three task pages, clips,
and a small JSON API for scripted labelers. Admin pages are in admin.py.

    app = create_app(LabelStore.open("labels.db"))   # `rlhfkit label serve` runs it under uvicorn

Routes (every one checks who is asking; a labeler reaches only items assigned to them):
  GET  /login, POST /login, POST /logout   sign-ins rate-limited (ratelimit.py); idle sessions end
  GET  /                                   projects and the labeler's progress
  GET  /p/{project}/next                   lease the next item, redirect to it (first: the instructions)
  GET  /p/{project}/instructions           the project's instructions (taskpages.py)
  GET  /p/{project}/item/{id}              the task page      POST: submit (form)
  GET  /media/{id}                         a clip, as media only (nosniff, sandboxed)
  GET  /api/v1/projects/{project}/next     JSON: lease the next item (`_item_json`)
  POST /api/v1/answers                     JSON: {item_id, client_key, answer, seconds_active}
  POST /api/v1/items/{id}/draft            JSON: {text}, a demonstration's autosaved draft (taskpages.py)
  GET  /screening/{name}, /admin/screening/{project}, ...   labeler screening (screening_pages.py); a
                                           project that requires one gives items to admitted labelers only
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Callable
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from rlhfkit.feedback.records import as_messages, prompt_text
from rlhfkit.labeling import auth
from rlhfkit.labeling.kinds import AnswerError, kind_of
from rlhfkit.labeling.ratelimit import LoginLimiter, LoginLimits
from rlhfkit.labeling.store import ItemView, LabelError, LabelStore, UserInfo
from rlhfkit.labeling.taskpages import instructions_first, task_extras
from rlhfkit.labeling.web import (HERE, LOGIN_COOKIE, MEDIA_CSP, SESSION_COOKIE, Denied, LoginRequired,
                                  SecurityHeaders, app_now, check_csrf, cookie_secure, idle_timeout,
                                  make_templates, page_user, redirect, render, safe_next, store_of)

IDLE_TIMEOUT = 30 * 60.0  # seconds a browser session may go unused before it ends (`label serve --idle-timeout`)


def create_app(store: LabelStore, secure_cookies: bool | None = None, *, login_limits: LoginLimits = LoginLimits(),
               idle_timeout: float | None = IDLE_TIMEOUT, clock: Callable[[], float] = time.time) -> FastAPI:
    """`secure_cookies`: None = Secure unless plain HTTP on loopback; True/False to force.
    `login_limits`: failed sign-ins allowed per account and per client address (ratelimit.py).
    `idle_timeout`: seconds a browser session may go unused (None or 0: no limit; a session
    still ends 7 days after sign-in). `clock`: seconds since the epoch, injectable for tests."""
    from rlhfkit.labeling.admin import router as admin_router
    from rlhfkit.labeling.screening_pages import install as install_screening
    from rlhfkit.labeling.taskpages import router as task_router

    app = FastAPI(title="rlhfkit labeling", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.templates = make_templates()
    app.state.secure_cookies = secure_cookies
    app.state.clock, app.state.idle_timeout = clock, idle_timeout
    app.state.login_limiter = LoginLimiter(login_limits, clock)
    store.secret()  # made (once per install) before the first request needs it
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(admin_router)
    app.include_router(task_router)
    install_screening(app)
    _routes(app)
    _errors(app)
    return app


def _errors(app: FastAPI) -> None:
    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        ended = getattr(request.state, "session_ended", False)  # a session cookie that no longer signs in
        if ended:  # idle too long (or past its lifetime): sign out for good, row and cookie
            await run_in_threadpool(store_of(request).end_session, request.cookies.get(SESSION_COOKIE, ""))
        if wants_json(request):
            resp: Response = JSONResponse({"error": "your session expired; sign in again" if ended
                                           else "sign in or send an API token"}, status_code=401)
        else:
            resp = redirect("/login?next=" + quote(safe_next(exc.next_url)) + ("&expired=1" if ended else ""))
        if ended:
            resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    @app.exception_handler(Denied)
    async def _denied(request: Request, exc: Denied) -> Response:
        if wants_json(request):
            return JSONResponse({"error": str(exc)}, status_code=403)
        return render(request, "error.html", 403, message=str(exc))

    @app.exception_handler(LabelError)
    async def _label_error(request: Request, exc: LabelError) -> Response:
        if wants_json(request):
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return render(request, "error.html", exc.status, message=str(exc))


def _login_form(request: Request, status: int, next_url: str, error: str | None = None,
                notice: str | None = None) -> HTMLResponse:
    """The sign-in page, with a fresh form token bound to a fresh cookie nonce."""
    nonce = secrets.token_urlsafe(24)
    resp = render(request, "login.html", status, login_csrf=auth.login_csrf(store_of(request).secret(), nonce),
                  next=next_url, error=error, notice=notice)
    resp.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="strict", secure=cookie_secure(request),
                    path="/login", max_age=3600)
    return resp


def _too_many_logins(request: Request, next_url: str, wait: int) -> Response:
    """429 with Retry-After: the sign-in page (or JSON for a client that asks for it)."""
    message = f"Too many failed sign-ins. Try again in {wait} seconds."
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return JSONResponse({"error": message, "retry_after": wait}, status_code=429,
                            headers={"retry-after": str(wait)})
    resp = _login_form(request, 429, next_url, error=message)
    resp.headers["retry-after"] = str(wait)
    return resp


def _task_page(request: Request, item: ItemView, status: int = 200, error: str | None = None,
               client_key: str | None = None, values: Any = None) -> HTMLResponse:
    """The kind's task page; `values`: what was submitted (a form to fill again after an error)."""
    extras = task_extras(store_of(request), page_user(request), item)  # progress, a demonstration's draft
    kind = kind_of(item.project)
    return render(request, kind.template, status, item=item, project=item.project, kind=kind,
                  error=error, client_key=client_key or secrets.token_urlsafe(18), values=values or {}, **extras)


class AnswerIn(BaseModel):
    item_id: int
    client_key: str
    answer: dict[str, Any]
    seconds_active: float | None = None


def _item_json(item: ItemView) -> dict[str, Any]:
    """An item for API clients: "prompt" is text (a conversation's HH-style transcript) and
    "messages" the conversation's messages (null for a plain-text prompt); a rating item has
    "form", its project's form (forms.Form.to_json: the fields an answer gives)."""
    messages = None if isinstance(item.prompt, str) else as_messages(item.prompt)
    return {"id": item.id, "project": item.project.name, "kind": item.project.kind,
            "prompt": prompt_text(item.prompt), "messages": messages,
            "responses": list(item.responses), "media": [f"/media/{m.id}" for m in item.media],
            "context": item.context, "min_chars": item.project.min_chars,
            **(kind_of(item.project).describe() or {})}  # a rating project's form


def _routes(app: FastAPI) -> None:
    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/", expired: bool = False) -> Response:
        notice = "Your session expired after a while without activity; sign in again." if expired else None
        return _login_form(request, 200, safe_next(next), notice=notice)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        store = store_of(request)
        nonce = request.cookies.get(LOGIN_COOKIE)
        if not nonce or not auth.same(str(form.get("csrf", "")), auth.login_csrf(store.secret(), nonce)):
            raise Denied("the login form expired; reload it and try again")
        username, next_url = str(form.get("username", "")), safe_next(str(form.get("next", "/")))
        address, limiter = request.client.host if request.client else None, request.app.state.login_limiter
        if (wait := limiter.attempt(username, address)) > 0:  # refused before the password is even looked at
            return _too_many_logins(request, next_url, wait)
        user = await run_in_threadpool(store.authenticate, username, str(form.get("password", "")))
        if user is None:
            return _login_form(request, 401, next_url, error="Wrong username or password.")
        limiter.succeeded(username, address)
        token, _csrf = await run_in_threadpool(store.create_session, user, idle_timeout(request), app_now(request))
        resp = redirect(next_url)
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=cookie_secure(request),
                        path="/", max_age=7 * 24 * 3600)
        resp.delete_cookie(LOGIN_COOKIE, path="/login")
        return resp

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        form = await request.form()
        check_csrf(request, str(form.get("csrf", "")))
        await run_in_threadpool(store_of(request).end_session, request.cookies.get(SESSION_COOKIE, ""))
        resp = redirect("/login")
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request, user: UserInfo = Depends(page_user)) -> Response:
        store = store_of(request)
        rows = [(p, store.progress(p.name, user), store.admitted(p.name, user)) for p in store.projects()]
        return render(request, "home.html", rows=rows, screenings=store.screenings())

    @app.get("/p/{project}/next")
    def next_page(request: Request, project: str, start: bool = False, user: UserInfo = Depends(page_user)) -> Response:
        if not start and instructions_first(store_of(request), project, user):
            return redirect(f"/p/{quote(project)}/instructions")
        item = store_of(request).next_item(project, user)
        if item is None:
            return render(request, "done.html", project=store_of(request).project(project))
        return redirect(f"/p/{item.project.name}/item/{item.id}")

    def _load(request: Request, project: str, item_id: int, user: UserInfo) -> tuple[ItemView, Any]:
        item, mine = store_of(request).item_for(user, item_id)
        if item.project.name != project:
            raise LabelError(f"no item {item_id} in project {project!r}")
        return item, mine

    @app.get("/p/{project}/item/{item_id}", response_class=HTMLResponse)
    def item_page(request: Request, project: str, item_id: int, user: UserInfo = Depends(page_user)) -> Response:
        item, mine = _load(request, project, item_id, user)
        if mine is not None:
            return render(request, "answered.html", project=item.project, item=item)
        return _task_page(request, item)

    @app.post("/p/{project}/item/{item_id}")
    async def submit_form(request: Request, project: str, item_id: int) -> Response:
        user = await run_in_threadpool(page_user, request)
        form = await request.form()
        check_csrf(request, str(form.get("csrf", "")))
        item, _mine = await run_in_threadpool(_load, request, project, item_id, user)
        key = str(form.get("client_key", ""))
        try:
            payload = kind_of(item.project).form_answer(len(item.responses), form)
            active = float(form.get("active_seconds") or "nan")
            await run_in_threadpool(store_of(request).submit, user, item_id, key, payload,
                                    active if active == active else None)
        except (LabelError, AnswerError, ValueError) as e:
            status = e.status if isinstance(e, LabelError) else 400
            return _task_page(request, item, status, str(e), key, values=form)
        return redirect(f"/p/{item.project.name}/next")

    @app.get("/media/{media_id}")
    def media(request: Request, media_id: int, user: UserInfo = Depends(page_user)) -> Response:
        ctype, data = store_of(request).media(user, media_id)
        return Response(data, media_type=ctype, headers={
            "content-security-policy": MEDIA_CSP, "x-content-type-options": "nosniff",
            "content-disposition": f'inline; filename="clip-{media_id}"', "cache-control": "private, max-age=3600"})

    # ------------------------------------------------------------ JSON API

    @app.get("/api/v1/projects")
    def api_projects(request: Request, user: UserInfo = Depends(page_user)) -> Any:
        return [{"name": p.name, "kind": p.kind} for p in store_of(request).projects()]

    @app.get("/api/v1/projects/{project}/next")
    def api_next(request: Request, project: str, user: UserInfo = Depends(page_user)) -> Any:
        item = store_of(request).next_item(project, user)
        return {"item": _item_json(item) if item else None}

    @app.get("/api/v1/items/{item_id}")
    def api_item(request: Request, item_id: int, user: UserInfo = Depends(page_user)) -> Any:
        item, mine = store_of(request).item_for(user, item_id)
        return {"item": _item_json(item), "answer": mine.payload if mine else None}

    @app.post("/api/v1/answers")
    def api_answer(request: Request, body: AnswerIn, user: UserInfo = Depends(page_user)) -> Any:
        check_csrf(request, request.headers.get("x-csrf-token"))
        res = store_of(request).submit(user, body.item_id, body.client_key, body.answer, body.seconds_active)
        return {"answer_id": res.answer_id, "duplicate": res.duplicate}
