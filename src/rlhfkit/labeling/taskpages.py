"""What every task page shows beyond its kind's form, as in InstructGPT's labeling interface
(Ouyang et al. 2022, appendix B): the project's instructions (a page before the first task, and
a dialog one keypress away on every task), the labeler's progress ("item 12 of 40"), the time
on the page (label.js), and for a demonstration the draft being written, autosaved.

Routes:
  GET  /p/{project}/instructions        the instructions, with a button to start labeling
  POST /api/v1/items/{id}/draft         JSON {"text": ...}: keep the labeler's draft (CSRF header)

Instructions are Markdown written by an admin but rendered like model text: no raw HTML, no
images, no javascript:/data: links, links opening with rel="noopener noreferrer" (web.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from rlhfkit.labeling.kinds import kind_of
from rlhfkit.labeling.store import ItemView, LabelStore, NotFound, UserInfo
from rlhfkit.labeling.web import check_csrf, page_user, render, store_of

router = APIRouter()


def task_extras(store: LabelStore, user: UserInfo, item: ItemView) -> dict[str, Any]:
    """Template values for any task page: `progress` (answered, items, this item's number)
    and `draft` (the saved text of a demonstration, else None)."""
    prog = store.progress(item.project.name, user)
    progress = {**prog, "number": min(prog["answered"] + 1, max(prog["items"], 1))}
    draft = None
    if kind_of(item.project).drafts:
        try:
            draft = store.draft(user, item.id)
        except NotFound:  # an admin looking at an item not assigned to them
            draft = None
    return {"progress": progress, "draft": draft}


def instructions_first(store: LabelStore, project: str, user: UserInfo) -> bool:
    """Whether `user` should read the project's instructions before their first item."""
    p = store.project(project)
    return bool(p.instructions) and not store.started(project, user)


@router.get("/p/{project}/instructions", response_class=HTMLResponse)
def instructions_page(request: Request, project: str, user: UserInfo = Depends(page_user)) -> Response:
    store = store_of(request)
    p = store.project(project)
    return render(request, "instructions.html", project=p, progress=store.progress(project, user),
                  started=store.started(project, user))


class DraftIn(BaseModel):
    text: str


@router.post("/api/v1/items/{item_id}/draft")
def save_draft(request: Request, item_id: int, body: DraftIn, user: UserInfo = Depends(page_user)) -> Any:
    check_csrf(request, request.headers.get("x-csrf-token"))
    store_of(request).save_draft(user, item_id, body.text)
    return {"saved": True, "chars": len(body.text)}
