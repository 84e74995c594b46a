"""The label store's tables (SQLAlchemy 2 declarative). Alembic migrations in
`migrations/versions/` build exactly this schema; a test checks the two agree.

Datetimes are naive UTC. JSON columns hold small lists/dicts: an item's responses (and its
prompt's messages when the prompt is a conversation), an answer's payload (`{"ranks": [...]}`,
`{"choice": "A"}`, `{"thumb": "up"}`, `{"score": 5, "flags": [...], "notes": ""}`: a rating
project's answers follow its form, `projects.form`) and a gold item's researcher answer in the same shape. A
demonstration answer is `{"text": "..."}`; the draft a labeler is writing lives on their
assignment until they submit.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rlhfkit.labeling.kinds import KIND_OBJECTS

KINDS: tuple[str, ...] = tuple(KIND_OBJECTS)
ROLES: tuple[str, ...] = ("admin", "labeler")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Setting(Base):
    """Per-install values (the session secret), generated on first use, never constants in code."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)  # argon2id
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)  # sha256 of the API token
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AuthSession(Base):
    """A browser session: the cookie holds a random token, the table its keyed hash."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    labels_per_item: Mapped[int] = mapped_column(Integer, default=1)
    gold_every: Mapped[int] = mapped_column(Integer, default=10)
    active_selection: Mapped[bool] = mapped_column(Boolean, default=False)
    markdown: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Markdown shown before the first task and on every task page (rendered without raw HTML)
    instructions: Mapped[str | None] = mapped_column(Text, nullable=True)
    min_chars: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # a demonstration's shortest
    # a rating project's form (forms.Form.to_json()); null: the default, InstructGPT's
    form: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # The screening (screenings.name) a labeler must pass before this project's items reach them;
    # null: none. A name, not a foreign key: SQLite adds a constraint only by rebuilding the table,
    # and rebuilding `projects` with foreign keys on would cascade-delete its items (migration 0005).
    screening: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # the admin's admission thresholds (screening.Thresholds.to_json()); null: none set yet
    screening_thresholds: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    prompt: Mapped[str] = mapped_column(Text)  # the prompt's text (a conversation's HH-style transcript)
    # a conversational prompt's messages, [{"role", "content"}, ...]; null for a plain-text prompt
    messages: Mapped[list[dict[str, str]] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    responses: Mapped[list[str]] = mapped_column(JSON)  # texts, or clip names for clip items
    policy: Mapped[str | None] = mapped_column(String(255), nullable=True)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # the researcher's answer
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    context: Mapped[str | None] = mapped_column(Text, nullable=True)  # shown to the labeler, not model input


class Media(Base):
    """A clip or image shown with an item, stored in the database so the store stays one thing."""

    __tablename__ = "media"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Assignment(Base):
    """An item shown to a labeler (a lease); `answered` is set in the answer's transaction."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("item_id", "user_id", name="uq_assignment_item_user"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    served_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    answered: Mapped[bool] = mapped_column(Boolean, default=False)
    draft: Mapped[str | None] = mapped_column(Text, nullable=True)  # a demonstration being written (autosaved)


class Answer(Base):
    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("item_id", "user_id", name="uq_answer_item_user"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_key: Mapped[str] = mapped_column(String(64), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    seconds_wall: Mapped[float] = mapped_column(Float)  # server: served -> submitted
    seconds_active: Mapped[float | None] = mapped_column(Float, nullable=True)  # client: page visible
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class DemonstrationRating(Base):
    """An admin's 1-7 Likert rating of a written demonstration (InstructGPT's screening:
    the "demonstration score"); one per answer and admin, a new rating replaces theirs."""

    __tablename__ = "demonstration_ratings"
    __table_args__ = (UniqueConstraint("answer_id", "user_id", name="uq_demorating_answer_user"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    answer_id: Mapped[int] = mapped_column(ForeignKey("answers.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    score: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Screening(Base):
    """A labeler screening (InstructGPT, Ouyang et al. 2022, sec. 3.4 and appendix B.1): gold
    flag items (a rating project), gold ranking items (a ranking project), a demonstration-writing
    test (a demonstration project, rated by admins) and a self-assessment over `topics`. A part
    left null is not part of this screening."""

    __tablename__ = "screenings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    flags_project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), nullable=True)
    ranking_project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), nullable=True)
    demonstration_project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), nullable=True)
    topics: Mapped[list[str]] = mapped_column(JSON)  # the self-assessment's questions
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SelfAssessment(Base):
    """A candidate's self-assessment: {topic: comfort 1-5}; answering again replaces it."""

    __tablename__ = "self_assessments"
    __table_args__ = (UniqueConstraint("screening_id", "user_id", name="uq_selfassessment_screening_user"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    screening_id: Mapped[int] = mapped_column(ForeignKey("screenings.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    answers: Mapped[dict[str, int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Admission(Base):
    """A decision to admit (or revoke) a labeler to a project that requires a screening: who
    decided, when, how (by hand, or by the thresholds) and the scores it saw. Rows are only
    added; a labeler's latest row is their standing."""

    __tablename__ = "admissions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    admitted: Mapped[bool] = mapped_column(Boolean)
    # the admin who decided; null: from the command line
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    how: Mapped[str] = mapped_column(String(16))  # "by hand" or "thresholds"
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
