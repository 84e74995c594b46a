"""The store's part for demonstrations and project instructions (LabelStore inherits it):
a project's instructions and shortest demonstration, demonstration items, the draft a labeler
is writing (autosaved on their assignment, so a reload loses nothing) and admins' 1-7
ratings of written demonstrations (the screening's "demonstration score").

    store.create_project("demos", "demonstration", min_chars=40, instructions=Path("howto.md").read_text())
    item = store.add_demonstration_item("demos", "Explain rainbows to a child.", context="The child is 6.")
    store.save_draft(ann, item, "Sunlight is made of ...")       # the page does this as the labeler types
    store.rate_demonstration(admin, answer_id, 6)
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rlhfkit.feedback.records import Prompt
from rlhfkit.labeling.kinds import DEFAULT_MAX_CHARS, DEMONSTRATION, NewItem
from rlhfkit.labeling.models import (
    Answer,
    Assignment,
    DemonstrationRating,
    Item,
    Project,
    User,
    utcnow,
)
from rlhfkit.labeling.views import (
    Conflict,
    Forbidden,
    LabelError,
    NotFound,
    ProjectInfo,
    UserInfo,
)

MAX_INSTRUCTIONS = 100_000  # characters of Markdown
MAX_DRAFT = DEFAULT_MAX_CHARS


def check_project_options(kind: str, instructions: str | None, min_chars: int | None) -> None:
    """Instructions are Markdown text of at most MAX_INSTRUCTIONS characters; `min_chars` is for
    demonstration projects, 0..MAX_DRAFT."""
    if instructions is not None and (not isinstance(instructions, str) or len(instructions) > MAX_INSTRUCTIONS):
        raise LabelError(f"instructions: Markdown text of at most {MAX_INSTRUCTIONS} characters")
    if min_chars is None:
        return
    if isinstance(min_chars, bool) or not isinstance(min_chars, int) or not 0 <= min_chars <= MAX_DRAFT:
        raise LabelError(f"min_chars: a whole number of characters from 0 to {MAX_DRAFT}")
    if min_chars and kind != DEMONSTRATION.name:
        raise LabelError(f"min_chars is for demonstration projects, not {kind}")


class DemonstrationStore:
    """Mixed into LabelStore; uses its `_tx` transactions and `project`/`add_items`."""

    _tx: Callable[..., AbstractContextManager[Session]]
    project: Callable[[str], ProjectInfo]
    add_items: Callable[..., list[int]]

    def set_project_options(self, project: str, instructions: str | None = None,
                            min_chars: int | None = None) -> ProjectInfo:
        """Change a project's instructions (Markdown; "" removes them) and/or its shortest
        demonstration; what is not given stays. Answers already stored are kept as they are."""
        info = self.project(project)
        check_project_options(info.kind, instructions, min_chars)
        with self._tx(write=True) as s:
            p = s.get(Project, info.id)
            if instructions is not None:
                p.instructions = instructions or None
            if min_chars is not None:
                p.min_chars = min_chars
        return self.project(project)

    def add_demonstration_item(self, project: str, prompt: Prompt, *, context: str | None = None,
                               meta: dict[str, Any] | None = None) -> int:
        """A prompt for a labeler to answer in writing; `context` is shown to them beside it."""
        return self.add_items(project, [NewItem(prompt, (), meta=meta or {}, context=context)])[0]

    def started(self, project: str, user: UserInfo) -> bool:
        """Whether `user` has been served any item of `project` (their instructions come before)."""
        p = self.project(project)
        with self._tx() as s:
            return s.scalar(select(Assignment.id).join(Item, Item.id == Assignment.item_id)
                            .where(Item.project_id == p.id, Assignment.user_id == user.id).limit(1)) is not None

    def _lease(self, s: Session, user: UserInfo, item_id: int) -> Assignment:
        lease = s.scalar(select(Assignment).where(Assignment.item_id == item_id, Assignment.user_id == user.id))
        if lease is None:
            raise NotFound(f"no item {item_id} in your queue")
        return lease

    def save_draft(self, user: UserInfo, item_id: int, text: str) -> None:
        """Keep what `user` has written so far for an item assigned to them (replacing the last draft)."""
        if not isinstance(text, str) or len(text) > MAX_DRAFT:
            raise LabelError(f"a draft is text of at most {MAX_DRAFT} characters")
        with self._tx(write=True) as s:
            lease = self._lease(s, user, item_id)
            if lease.answered:
                raise Conflict("you have already answered this item")
            lease.draft = text

    def draft(self, user: UserInfo, item_id: int) -> str | None:
        """`user`'s saved draft for an item (None: none, or already submitted)."""
        with self._tx() as s:
            return self._lease(s, user, item_id).draft

    def rate_demonstration(self, admin: UserInfo, answer_id: int, score: int) -> None:
        """An admin's 1-7 rating of a written demonstration; rating it again replaces theirs."""
        if not admin.is_admin:
            raise Forbidden("admins only")
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 7:
            raise LabelError("a demonstration's rating is on the 1-7 Likert scale")
        with self._tx() as s:
            kind = s.scalar(select(Project.kind).join(Item, Item.project_id == Project.id)
                            .join(Answer, Answer.item_id == Item.id).where(Answer.id == answer_id))
        if kind is None:
            raise NotFound(f"no answer {answer_id}")
        if kind != "demonstration":
            raise LabelError(f"answer {answer_id} is a {kind} answer, not a demonstration")
        for attempt in range(2):  # two admins rating at once: the loser of the insert race updates
            try:
                with self._tx(write=True) as s:
                    row = s.scalar(select(DemonstrationRating).where(DemonstrationRating.answer_id == answer_id,
                                                                     DemonstrationRating.user_id == admin.id))
                    if row is None:
                        s.add(DemonstrationRating(answer_id=answer_id, user_id=admin.id, score=score))
                    else:
                        row.score, row.created_at = score, utcnow()
                return
            except IntegrityError:
                if attempt:
                    raise

    def demonstration_ratings(self, project: str) -> dict[int, list[tuple[str, int]]]:
        """{answer id: [(admin, score), ...]} for a project's rated demonstrations, oldest first."""
        p = self.project(project)
        out: dict[int, list[tuple[str, int]]] = {}
        with self._tx() as s:
            q = (select(DemonstrationRating.answer_id, User.username, DemonstrationRating.score)
                 .join(User, User.id == DemonstrationRating.user_id)
                 .join(Answer, Answer.id == DemonstrationRating.answer_id).join(Item, Item.id == Answer.item_id)
                 .where(Item.project_id == p.id).order_by(DemonstrationRating.id))
            for answer_id, admin, score in s.execute(q):
                out.setdefault(answer_id, []).append((admin, score))
        return out
