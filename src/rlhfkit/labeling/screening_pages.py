"""The screening's pages (screening.py): a candidate's overview of the screening and its
self-assessment, and the admin page of a project that requires a screening (each candidate's
four scores, the thresholds, admit and revoke). A labeler whom a project does not admit gets
the overview, with why, instead of an item (403), and the JSON API a 403 saying so.

Routes:
  GET  /screening/{name}                   the parts, the candidate's progress and standing
  GET  /screening/{name}/self-assessment   comfort 1-5 per topic   POST: save it (form, CSRF)
  GET  /admin/screening/{project}          candidates, scores, thresholds form, admit/revoke
  POST /admin/screening/{project}/thresholds   the four thresholds (blank: not required)
  POST /admin/screening/{project}/decide       labeler, action=admit|revoke (recorded: who, when)
  POST /admin/screening/{project}/admit-passing  admit everyone who meets the thresholds
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from rlhfkit.labeling.screening import (
    COMFORT,
    LABELS,
    SCALES,
    SCORES,
    Thresholds,
    admit_passing,
    screening_table,
)
from rlhfkit.labeling.store import LabelError, LabelStore, ScreeningRequired, UserInfo
from rlhfkit.labeling.web import (
    admin_user,
    check_csrf,
    page_user,
    redirect,
    render,
    store_of,
)

router = APIRouter()
PART_LABELS = {"flags": "Sensitive-content flags (gold items)", "ranking": "Ranking (gold items)",
               "demonstration": "Writing demonstrations"}


def install(app: FastAPI) -> None:
    """The routes, and the page (or JSON) a labeler gets from a project that does not admit them."""
    app.include_router(router)

    @app.exception_handler(ScreeningRequired)
    async def _screening_required(request: Request, exc: ScreeningRequired) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc), "screening": exc.screening,
                                 "screening_url": f"/screening/{quote(exc.screening, safe='')}"}, status_code=403)
        user = await run_in_threadpool(page_user, request)
        ctx = await run_in_threadpool(_overview, store_of(request), exc.screening, user)
        return render(request, "screening.html", 403, required=exc.project, **ctx)


def _overview(store: LabelStore, name: str, user: UserInfo) -> dict[str, Any]:
    """Template values: the screening's parts with `user`'s progress, and their standing in each
    project that requires this screening (admitted, awaiting review, or still to finish)."""
    sc = store.screening(name)
    parts = []
    for part, project in sc.parts():
        prog = store.progress(project, user)
        parts.append({"part": part, "label": PART_LABELS[part], "project": project, **prog,
                      "done": prog["answered"] >= prog["items"]})
    assessed = store.self_assessment(name, user) if sc.topics else None
    finished = all(p["done"] for p in parts) and (not sc.topics or assessed is not None)
    standing = []
    for p in store.projects():
        if p.screening == name:
            decision = store.admissions(p.name).get(user.username)
            state = ("admitted" if store.admitted(p.name, user) else "revoked" if decision is not None
                     else "awaiting review" if finished else "complete the screening")
            standing.append((p, state))
    return {"screening": sc, "parts": parts, "assessed": assessed, "finished": finished, "standing": standing}


@router.get("/screening/{name}", response_class=HTMLResponse)
def screening_page(request: Request, name: str, saved: bool = False, user: UserInfo = Depends(page_user)) -> Response:
    ctx = _overview(store_of(request), name, user)
    return render(request, "screening.html", required=None, saved=saved, **ctx)


@router.get("/screening/{name}/self-assessment", response_class=HTMLResponse)
def self_assessment_page(request: Request, name: str, user: UserInfo = Depends(page_user)) -> Response:
    store = store_of(request)
    sc = store.screening(name)
    if not sc.topics:
        raise LabelError(f"screening {name!r} has no self-assessment")
    return render(request, "self_assessment.html", screening=sc, comfort=COMFORT,
                  values=store.self_assessment(name, user) or {}, error=None)


@router.post("/screening/{name}/self-assessment")
async def save_self_assessment(request: Request, name: str) -> Response:
    user = await run_in_threadpool(page_user, request)
    form = await request.form()
    check_csrf(request, str(form.get("csrf", "")))
    store = store_of(request)
    sc = await run_in_threadpool(store.screening, name)
    # topics are free text: the form names them by position, never by their text
    answers = {t: str(form.get(f"topic_{i}", "")) for i, t in enumerate(sc.topics)}
    try:
        await run_in_threadpool(store.save_self_assessment, name, user, answers)
    except LabelError as e:
        values = {t: int(v) for t, v in answers.items() if v.isdigit()}
        return render(request, "self_assessment.html", 400, screening=sc, comfort=COMFORT, values=values,
                      error=str(e))
    return redirect(f"/screening/{quote(name, safe='')}?saved=1")


# ---------------------------------------------------------------- admin

@router.get("/admin/screening/{project}", response_class=HTMLResponse)
def admin_screening(request: Request, project: str, user: UserInfo = Depends(admin_user)) -> Response:
    table = screening_table(store_of(request), project)
    # what the last POST did, told by a fixed code (no text from the URL is shown)
    done, count = request.query_params.get("done"), request.query_params.get("admitted", "")
    message = {"thresholds": "Thresholds saved.", "decided": "Decision recorded.",
               "admitted": f"Admitted {int(count) if count.isdigit() else 0} labeler(s) who meet the thresholds."
               }.get(done or "")
    return render(request, "admin_screening.html", table=table, scores=SCORES, labels=LABELS, scales=SCALES,
                  wanted=table.thresholds.to_json(), message=message)


async def _admin_form(request: Request) -> tuple[UserInfo, Any]:
    admin = await run_in_threadpool(admin_user, request)
    form = await request.form()
    check_csrf(request, str(form.get("csrf", "")))
    return admin, form


def _back(project: str, done: str, anchor: str = "", admitted: int = 0) -> Response:
    query = f"?done={done}" + (f"&admitted={admitted}" if done == "admitted" else "")
    return redirect(f"/admin/screening/{quote(project, safe='')}{query}{anchor}")


@router.post("/admin/screening/{project}/thresholds")
async def set_thresholds(request: Request, project: str) -> Response:
    _admin, form = await _admin_form(request)
    thresholds = Thresholds.from_json({name: str(form.get(name, "")).strip() for name in SCORES})
    await run_in_threadpool(store_of(request).set_thresholds, project, thresholds)
    return _back(project, "thresholds", "#thresholds")


@router.post("/admin/screening/{project}/decide")
async def decide(request: Request, project: str) -> Response:
    admin, form = await _admin_form(request)
    action, labeler = str(form.get("action", "")), str(form.get("labeler", ""))
    if action not in ("admit", "revoke"):
        raise LabelError(f"unknown action {action!r}: admit or revoke")
    store = store_of(request)
    table = await run_in_threadpool(screening_table, store, project)
    seen = {c.scores.labeler: c.scores for c in table.candidates}
    scores = seen[labeler].to_json() if labeler in seen else None
    await run_in_threadpool(store.decide, project, labeler, action == "admit", admin, "by hand", scores)
    return _back(project, "decided", f"#candidate-{quote(labeler, safe='')}")


@router.post("/admin/screening/{project}/admit-passing")
async def admit_all_passing(request: Request, project: str) -> Response:
    admin, _form = await _admin_form(request)
    admitted = await run_in_threadpool(admit_passing, store_of(request), project, admin)
    return _back(project, "admitted", admitted=len(admitted))
