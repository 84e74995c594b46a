"""The store's part for labeler screening (LabelStore inherits it; screening.py computes the
scores): screenings and their parts, the project that requires one and its thresholds,
candidates' self-assessments, and admission decisions (who, when, how). A project that
requires a screening gives items to admins and admitted labelers only: `next_item` and
`submit` call `_check_admitted`, which raises ScreeningRequired (403) for anyone else.

    store.create_screening("screen", flags="screen-flags", ranking="screen-rank",
                           demonstration="screen-demos", topics=["Medical advice", "Violence"])
    store.require_screening("chat", "screen")
    store.save_self_assessment("screen", ann, {"Medical advice": 4, "Violence": 2})
    store.decide("chat", "ann", True, admin)          # admitted by hand, recorded with who and when
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from rlhfkit.labeling.kinds import kind_of
from rlhfkit.labeling.models import (
    Admission,
    Project,
    Screening,
    SelfAssessment,
    User,
    utcnow,
)
from rlhfkit.labeling.screening import COMFORT, Thresholds
from rlhfkit.labeling.views import (
    Conflict,
    Forbidden,
    LabelError,
    NotFound,
    ProjectInfo,
    UserInfo,
)

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_TOPICS, MAX_TOPIC = 50, 200  # questions of a self-assessment, characters of each
HOW = ("by hand", "thresholds")  # how an admission was decided
PARTS = ("flags", "ranking", "demonstration")  # a screening's projects: the kind each must be
PART_KIND = {"flags": "rating", "ranking": "ranking", "demonstration": "demonstration"}


class ScreeningRequired(Forbidden):
    """A labeler not (or no longer) admitted asked for an item of a project that requires a screening."""

    def __init__(self, project: str, screening: str) -> None:
        super().__init__(f"project {project!r} is open only to labelers admitted after the screening "
                         f"{screening!r}: complete it (/screening/{screening}), then an admin reviews it")
        self.project, self.screening = project, screening


@dataclass(frozen=True)
class ScreeningInfo:
    id: int
    name: str
    flags: str | None  # the rating project of gold flag items
    ranking: str | None  # the ranking project of gold rankings
    demonstration: str | None  # the demonstration-writing test, rated by admins
    topics: tuple[str, ...]  # the self-assessment's questions

    def parts(self) -> list[tuple[str, str]]:
        """(part, project) for each part this screening has."""
        return [(part, getattr(self, part)) for part in PARTS if getattr(self, part)]


@dataclass(frozen=True)
class AdmissionView:
    labeler: str
    admitted: bool
    by: str | None  # the admin; None: from the command line
    how: str  # "by hand" or "thresholds"
    scores: dict[str, Any] | None  # the scores the decision saw
    at: datetime


class ScreeningStore:
    """Mixed into LabelStore; uses its `_tx` transactions and `project`/`user`/`progress`."""

    _tx: Callable[..., AbstractContextManager[Session]]
    project: Callable[[str], ProjectInfo]
    user: Callable[[str], UserInfo]

    # ------------------------------------------------------------ screenings

    def create_screening(self, name: str, *, flags: str | None = None, ranking: str | None = None,
                         demonstration: str | None = None, topics: Sequence[str] = ()) -> ScreeningInfo:
        """A screening from existing projects: `flags` a rating project whose form has flags (its
        gold items are the test), `ranking` a ranking project (its gold items), `demonstration` a
        demonstration project (admins rate what candidates write); `topics` the self-assessment's."""
        if not _NAME.match(name or ""):
            raise LabelError("a screening name is 1-128 letters, digits or . _ -")
        topics = _check_topics(topics)
        given = {"flags": flags, "ranking": ranking, "demonstration": demonstration}
        if not any(given.values()) and not topics:
            raise LabelError("a screening needs a part: flags, ranking, demonstration or topics")
        ids: dict[str, int | None] = {}
        for part, project in given.items():
            ids[part] = None if project is None else self._part_project(part, project).id
        row = Screening(name=name, flags_project_id=ids["flags"], ranking_project_id=ids["ranking"],
                        demonstration_project_id=ids["demonstration"], topics=list(topics))
        try:
            with self._tx(write=True) as s:
                s.add(row)
        except IntegrityError:
            raise Conflict(f"screening {name!r} already exists") from None
        return self.screening(name)

    def _part_project(self, part: str, project: str) -> ProjectInfo:
        p = self.project(project)
        if p.kind != PART_KIND[part]:
            raise LabelError(f"{part}: project {project!r} is a {p.kind} project, not {PART_KIND[part]}")
        if part == "flags" and not any(f.type == "flags" for f in kind_of(p).form.fields):  # type: ignore[attr-defined]
            raise LabelError(f"flags: the form of project {project!r} has no flags field")
        if p.screening is not None:
            raise LabelError(f"{part}: project {project!r} itself requires a screening; candidates could not take it")
        return p

    @staticmethod
    def _screening_info(s: Session, row: Screening) -> ScreeningInfo:
        def name(pid: int | None) -> str | None:
            return None if pid is None else s.get(Project, pid).name
        return ScreeningInfo(row.id, row.name, name(row.flags_project_id), name(row.ranking_project_id),
                             name(row.demonstration_project_id), tuple(row.topics))

    def screening(self, name: str) -> ScreeningInfo:
        with self._tx() as s:
            row = s.scalar(select(Screening).where(Screening.name == name))
            if row is None:
                raise NotFound(f"no screening {name!r}")
            return self._screening_info(s, row)

    def screenings(self) -> list[ScreeningInfo]:
        with self._tx() as s:
            return [self._screening_info(s, r) for r in s.scalars(select(Screening).order_by(Screening.id))]

    def require_screening(self, project: str, screening: str | None) -> ProjectInfo:
        """Make `project`'s items go only to labelers admitted after `screening` (None: to anyone)."""
        p = self.project(project)
        if screening is not None:
            self.screening(screening)  # it exists
            for sc in self.screenings():  # candidates must be able to take every screening's parts
                if project in dict(sc.parts()).values():
                    raise LabelError(f"project {project!r} is part of the screening {sc.name!r}, so cannot "
                                     "require a screening")
        with self._tx(write=True) as s:
            s.get(Project, p.id).screening = screening
        return self.project(project)

    def set_thresholds(self, project: str, thresholds: Thresholds | Mapping[str, Any]) -> ProjectInfo:
        """A project's admission thresholds (screening.Thresholds; a score left None is not required)."""
        p = self.project(project)
        if p.screening is None:
            raise LabelError(f"project {project!r} requires no screening, so has no thresholds")
        checked = thresholds if isinstance(thresholds, Thresholds) else Thresholds.from_json(thresholds)
        with self._tx(write=True) as s:
            s.get(Project, p.id).screening_thresholds = checked.to_json() or None
        return self.project(project)

    # ------------------------------------------------------------ self-assessments

    def save_self_assessment(self, screening: str, user: UserInfo, answers: Mapping[str, Any]) -> dict[str, int]:
        """A candidate's comfort (1-5) with judging each of the screening's topics; again replaces it."""
        sc = self.screening(screening)
        if not sc.topics:
            raise LabelError(f"screening {screening!r} has no self-assessment")
        checked = _check_answers(sc.topics, answers)
        for attempt in range(2):  # a double submit: the loser of the insert race updates
            try:
                with self._tx(write=True) as s:
                    row = s.scalar(select(SelfAssessment).where(SelfAssessment.screening_id == sc.id,
                                                                SelfAssessment.user_id == user.id))
                    if row is None:
                        s.add(SelfAssessment(screening_id=sc.id, user_id=user.id, answers=checked))
                    else:
                        row.answers, row.created_at = checked, utcnow()
                return checked
            except IntegrityError:
                if attempt:
                    raise
        return checked

    def self_assessment(self, screening: str, user: UserInfo) -> dict[str, int] | None:
        sc = self.screening(screening)
        with self._tx() as s:
            return s.scalar(select(SelfAssessment.answers).where(SelfAssessment.screening_id == sc.id,
                                                                 SelfAssessment.user_id == user.id))

    def self_assessments(self, screening: str) -> dict[str, dict[str, int]]:
        """{labeler: {topic: comfort}} for everyone who answered the screening's self-assessment."""
        sc = self.screening(screening)
        with self._tx() as s:
            q = (select(User.username, SelfAssessment.answers).join(User, User.id == SelfAssessment.user_id)
                 .where(SelfAssessment.screening_id == sc.id))
            return {name: dict(answers) for name, answers in s.execute(q)}

    # ------------------------------------------------------------ admission

    def decide(self, project: str, labeler: str, admitted: bool, by: UserInfo | None, how: str = "by hand",
               scores: Mapping[str, Any] | None = None) -> AdmissionView:
        """Record that `labeler` is admitted to (or revoked from) `project`, by the admin `by`
        (None: from the command line); their latest decision is their standing."""
        p = self.project(project)
        if p.screening is None:
            raise LabelError(f"project {project!r} requires no screening: everyone gets its items")
        if by is not None and not by.is_admin:
            raise Forbidden("admins only")
        if how not in HOW:
            raise LabelError(f"how: one of {', '.join(HOW)}")
        candidate = self.user(labeler)
        with self._tx(write=True) as s:
            s.add(Admission(project_id=p.id, user_id=candidate.id, admitted=bool(admitted),
                            decided_by=by.id if by else None, how=how, scores=dict(scores) if scores else None))
        return self.admissions(project)[labeler]

    def admissions(self, project: str) -> dict[str, AdmissionView]:
        """{labeler: their latest admission decision} for a project."""
        p = self.project(project)
        admin = aliased(User)
        out: dict[str, AdmissionView] = {}
        with self._tx() as s:
            q = (select(Admission, User.username, admin.username).join(User, User.id == Admission.user_id)
                 .outerjoin(admin, admin.id == Admission.decided_by)
                 .where(Admission.project_id == p.id).order_by(Admission.id))
            for a, name, by in s.execute(q):
                out[name] = AdmissionView(name, a.admitted, by, a.how, a.scores, a.created_at)
        return out

    def admitted(self, project: str, user: UserInfo) -> bool:
        """Whether `user` gets `project`'s items: always for a project without a screening, and
        for admins; otherwise when their latest decision admits them."""
        p = self.project(project)
        with self._tx() as s:
            return self._is_admitted(s, p.id, p.screening, user)

    @staticmethod
    def _is_admitted(s: Session, project_id: int, screening: str | None, user: UserInfo) -> bool:
        if screening is None or user.is_admin:
            return True
        latest = s.scalar(select(Admission.admitted).where(Admission.project_id == project_id,
                                                           Admission.user_id == user.id)
                          .order_by(Admission.id.desc()).limit(1))
        return bool(latest)

    def _check_admitted(self, s: Session, p: Project, user: UserInfo) -> None:
        """Inside the queue's and submit's transactions: refuse a labeler the project does not admit."""
        if not self._is_admitted(s, p.id, p.screening, user):
            raise ScreeningRequired(p.name, p.screening or "")


def _check_topics(topics: Sequence[str]) -> tuple[str, ...]:
    if isinstance(topics, str) or not isinstance(topics, (list, tuple)):
        raise LabelError("topics: a list of texts")
    out = tuple(topics)
    if len(out) > MAX_TOPICS:
        raise LabelError(f"topics: at most {MAX_TOPICS}")
    for i, t in enumerate(out):
        if not isinstance(t, str) or not t.strip() or len(t) > MAX_TOPIC:
            raise LabelError(f"topics[{i}]: a text of 1-{MAX_TOPIC} characters")
    if len(set(out)) != len(out):
        raise LabelError("topics: each topic once")
    return out


def _check_answers(topics: Sequence[str], answers: Mapping[str, Any]) -> dict[str, int]:
    if not isinstance(answers, Mapping):
        raise LabelError("a self-assessment is {topic: comfort 1-5}")
    extra = sorted(set(answers) - set(topics))
    if extra:
        raise LabelError(f"{extra[0]!r} is not a topic of this screening")
    out = {}
    for t in topics:
        v = answers.get(t)
        if isinstance(v, str) and v.isdigit():
            v = int(v)
        if isinstance(v, bool) or v not in COMFORT:
            raise LabelError(f"{t}: choose how comfortable you are judging it, from 1 to 5")
        out[t] = v
    return out
