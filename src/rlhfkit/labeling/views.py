"""What the store hands out: frozen views of users, projects, items and answers, and the
errors it raises (each a UserError carrying the HTTP status the web app answers with)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rlhfkit.errors import UserError
from rlhfkit.feedback.records import Prompt


class LabelError(UserError):
    """A request the store refuses; `status` is the HTTP status the web app answers with."""

    status = 400


class NotFound(LabelError):
    status = 404


class Forbidden(LabelError):
    status = 403


class Conflict(LabelError):
    status = 409


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    role: str
    active: bool
    has_password: bool = False
    has_token: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class ProjectInfo:
    id: int
    name: str
    kind: str
    labels_per_item: int
    gold_every: int
    active_selection: bool
    markdown: bool
    instructions: str | None = None  # Markdown, shown before the first task and on every task page
    min_chars: int = 0  # the shortest demonstration accepted (characters, surrounding whitespace aside)
    form: dict[str, Any] | None = None  # a rating project's form (forms.py); None: InstructGPT's
    screening: str | None = None  # the screening a labeler passes before getting items (screening.py)
    thresholds: dict[str, Any] | None = None  # its admission thresholds (screening.Thresholds.to_json())


@dataclass(frozen=True)
class MediaRef:
    id: int
    position: int
    content_type: str


@dataclass(frozen=True)
class ItemView:
    id: int
    project: ProjectInfo
    prompt: Prompt  # a string, or a conversation (a tuple of records.Message)
    responses: tuple[str, ...]
    media: tuple[MediaRef, ...]
    is_gold: bool
    gold: dict[str, Any] | None
    policy: str | None
    meta: dict[str, Any]
    context: str | None = None  # shown to the labeler beside the prompt; not the model's input


@dataclass(frozen=True)
class AnswerView:
    id: int
    item_id: int
    labeler: str
    payload: dict[str, Any]
    seconds_wall: float
    seconds_active: float | None
    created_at: datetime


@dataclass(frozen=True)
class SubmitResult:
    answer_id: int
    duplicate: bool  # True: this client key was already stored; nothing new was written
