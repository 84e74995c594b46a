"""Admin pages: labeler quality and agreement per project, every item with its answers,
users (add, disable, enable), export, and 1-7 ratings of written demonstrations (each
labeler's "demonstration score"). Every route here requires the admin role."""

from __future__ import annotations

import json
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from rlhfkit.feedback.records import record_to_dict
from rlhfkit.labeling.export import ExportSummary, collect_records
from rlhfkit.labeling.kinds import kind_of
from rlhfkit.labeling.quality import demonstration_scores, project_quality
from rlhfkit.labeling.store import LabelError, UserInfo
from rlhfkit.labeling.web import admin_user, check_csrf, redirect, render, store_of

router = APIRouter(prefix="/admin")


@router.get("", response_class=HTMLResponse)
def admin_home(request: Request, user: UserInfo = Depends(admin_user)) -> Response:
    store = store_of(request)
    projects = [(p, project_quality(kind_of(p), store.items_with_answers(p.name))) for p in store.projects()]
    return render(request, "admin.html", projects=projects, users=store.users(), message=None)


PAGE = 100  # items listed per admin page


@router.get("/p/{project}", response_class=HTMLResponse)
def admin_project(request: Request, project: str, page: int = 1, user: UserInfo = Depends(admin_user)) -> Response:
    store = store_of(request)
    p = store.project(project)
    rows = store.items_with_answers(project)
    pages = max(1, -(-len(rows) // PAGE))
    page = min(max(page, 1), pages)
    ratings = store.demonstration_ratings(project) if p.kind == "demonstration" else {}
    demo = demonstration_scores(rows, ratings) if p.kind == "demonstration" else None
    return render(request, "admin_project.html", project=p, quality=project_quality(kind_of(p), rows),
                  rows=rows[(page - 1) * PAGE:page * PAGE], page=page, pages=pages, ratings=ratings, demo=demo)


async def _admin_form(request: Request) -> tuple[UserInfo, dict]:
    user = await run_in_threadpool(admin_user, request)
    form = await request.form()
    check_csrf(request, str(form.get("csrf", "")))
    return user, form


@router.post("/users")
async def add_user(request: Request) -> Response:
    _admin, form = await _admin_form(request)
    store = store_of(request)
    await run_in_threadpool(store.add_user, str(form.get("username", "")), str(form.get("password", "")),
                            str(form.get("role", "labeler")))
    return redirect("/admin")


@router.post("/users/{username}/{action}")
async def set_active(request: Request, username: str, action: str) -> Response:
    admin, _form = await _admin_form(request)
    if action not in ("disable", "enable"):
        raise LabelError(f"unknown action {action!r}")
    if username == admin.username:
        raise LabelError("you cannot disable yourself")
    await run_in_threadpool(store_of(request).set_active, username, action == "enable")
    return redirect("/admin")


@router.post("/answers/{answer_id}/rating")
async def rate_demonstration(request: Request, answer_id: int) -> Response:
    """An admin's 1-7 rating of a written demonstration; back to where the form was."""
    admin, form = await _admin_form(request)
    score = str(form.get("score", ""))
    if not score.isdigit():
        raise LabelError("choose a rating from 1 to 7")
    store = store_of(request)
    await run_in_threadpool(store.rate_demonstration, admin, answer_id, int(score))
    project, page = str(form.get("project", "")), str(form.get("page", "1"))
    back = f"/admin/p/{quote(project, safe='')}?page={int(page) if page.isdigit() else 1}" if project else "/admin"
    return redirect(f"{back}#answer-{answer_id}")


@router.get("/export")
def export(request: Request, project: str | None = None, min_gold_agreement: float | None = None,
           user: UserInfo = Depends(admin_user)) -> Response:
    """The records `rlhfkit label export` writes, as a JSONL download."""
    summary = ExportSummary()
    records = collect_records(store_of(request), project or None, min_gold_agreement, summary)
    body = "".join(json.dumps(record_to_dict(r), ensure_ascii=False) + "\n" for r in records)
    return Response(body, media_type="application/x-ndjson", headers={
        "content-disposition": 'attachment; filename="labels.jsonl"',
        "x-dropped-labelers": ",".join(summary.dropped_labelers)})
