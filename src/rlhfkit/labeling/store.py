"""LabelStore: the one API over the label database, used by the web app, the CLI and
other code (the control-task web labeler). SQLite in a file by default (WAL mode, every
write in a `BEGIN IMMEDIATE` transaction, `synchronous=FULL`), PostgreSQL by URL; the
schema is built and upgraded by the Alembic migrations shipped in `migrations/`.

    store = LabelStore.open("labels.db")               # or "postgresql://user:pw@host/db"
    store.create_project("clips", "pairwise", labels_per_item=3)
    item = store.add_pairwise_item("clips", "Which clip lands the hopper?", "a.mp4", "b.mp4")
    ...labelers answer in the browser...
    store.answers_for([item])    # {item: [AnswerView(labeler, payload={"choice": "A"}, ...)]}
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from sqlalchemy import Engine, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from rlhfkit.feedback.records import Prompt, RecordError, as_messages, parse_prompt, prompt_text
from rlhfkit.labeling import auth
from rlhfkit.labeling.demos import DemonstrationStore, check_project_options
from rlhfkit.labeling.engine import make_engine, normalize_url  # noqa: F401 (re-exported)
from rlhfkit.labeling.forms import FormError, parse_form
from rlhfkit.labeling.kinds import KIND_OBJECTS, AnswerError, NewItem, kind_of, validate_answer, validate_new_item
from rlhfkit.labeling.media import load_media, sha256
from rlhfkit.labeling.models import (ROLES, Answer, Assignment, AuthSession, Item, Media, Project,
                                     Setting, User, utcnow)
from rlhfkit.labeling.screening_store import ScreeningRequired, ScreeningStore  # noqa: F401 (re-exported)
from rlhfkit.labeling.views import (AnswerView, Conflict, Forbidden, ItemView, LabelError,  # noqa: F401
                                    MediaRef, NotFound, ProjectInfo, SubmitResult, UserInfo)

LEASE = timedelta(minutes=30)  # an item shown but not answered is offered to others after this
SESSION_TTL = timedelta(days=7)
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_CLIENT_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_PROJECT = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _chunks(ids: list[int], size: int = 1000) -> list[list[int]]:
    """Keeps `IN (...)` lists within every database's parameter limit."""
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def _project_info(p: Project) -> ProjectInfo:
    return ProjectInfo(p.id, p.name, p.kind, p.labels_per_item, p.gold_every, p.active_selection, p.markdown,
                       p.instructions, p.min_chars or 0, p.form, p.screening, p.screening_thresholds)


def _user_info(u: User) -> UserInfo:
    return UserInfo(u.id, u.username, u.role, u.active, u.password_hash is not None, u.token_hash is not None)


def _session_deadline(created: datetime, now: datetime, idle: timedelta | None) -> datetime:
    """When a session used at `now` ends: `idle` after its last use, SESSION_TTL after sign-in."""
    return created + SESSION_TTL if idle is None else min(created + SESSION_TTL, now + idle)


class LabelStore(DemonstrationStore, ScreeningStore):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reader = sessionmaker(engine, expire_on_commit=False)
        self._writer = sessionmaker(engine.execution_options(write=True), expire_on_commit=False)
        self._secret: str | None = None
        # SQLite has one writer at a time; queueing this process's writers on a lock spares them
        # SQLite's busy-wait sleeps (long latency tails). Other processes still wait on busy_timeout.
        self._write_lock = threading.RLock() if engine.dialect.name == "sqlite" else nullcontext()

    @classmethod
    def open(cls, url: str, migrate: bool = True) -> "LabelStore":
        """Open (and by default create or upgrade) the store at `url`."""
        store = cls(make_engine(url))
        if migrate:
            store.migrate()
        return store

    def migrate(self, revision: str = "head") -> None:
        from rlhfkit.labeling.migrate import upgrade

        upgrade(self.engine, revision)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Session]:
        if not write:
            with self._reader() as s, s.begin():
                yield s
            return
        with self._write_lock, self._writer() as s, s.begin():
            yield s

    # ------------------------------------------------------------ install secret

    def secret(self) -> str:
        """The per-install secret, generated on first use and kept in the database."""
        if self._secret is None:
            with self._tx() as s:
                row = s.get(Setting, "secret_key")
            if row is None:
                try:
                    with self._tx(write=True) as s:
                        s.add(Setting(key="secret_key", value=auth.new_token()))
                except IntegrityError:
                    pass  # another process made it first
                with self._tx() as s:
                    row = s.get(Setting, "secret_key")
            self._secret = row.value
        return self._secret

    # ------------------------------------------------------------ users

    def add_user(self, username: str, password: str | None = None, role: str = "labeler",
                 token: bool = False) -> tuple[UserInfo, str | None]:
        """Add a user with a password and/or an API token; returns the token (shown once)."""
        if not _USERNAME.match(username):
            raise LabelError("a username is 1-64 letters, digits or . _ @ -")
        if role not in ROLES:
            raise LabelError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
        if password is None and not token:
            raise LabelError("a user needs a password, an API token, or both")
        if password is not None and len(password) < auth.MIN_PASSWORD:
            raise LabelError(f"a password needs at least {auth.MIN_PASSWORD} characters")
        tok = auth.new_token() if token else None
        user = User(username=username, role=role, active=True,
                    password_hash=auth.hash_password(password) if password is not None else None,
                    token_hash=auth.token_hash(tok) if tok else None)
        try:
            with self._tx(write=True) as s:
                s.add(user)
                s.flush()
                info = _user_info(user)
        except IntegrityError:
            raise Conflict(f"user {username!r} already exists") from None
        return info, tok

    def users(self) -> list[UserInfo]:
        with self._tx() as s:
            return [_user_info(u) for u in s.scalars(select(User).order_by(User.id))]

    def user(self, username: str) -> UserInfo:
        with self._tx() as s:
            u = s.scalar(select(User).where(User.username == username))
            if u is None:
                raise NotFound(f"no user {username!r}")
            return _user_info(u)

    def set_active(self, username: str, active: bool) -> None:
        """Disable (or re-enable) a user; disabling ends their sessions. Their labels stay."""
        with self._tx(write=True) as s:
            u = s.scalar(select(User).where(User.username == username))
            if u is None:
                raise NotFound(f"no user {username!r}")
            u.active = active
            if not active:
                s.query(AuthSession).filter(AuthSession.user_id == u.id).delete()

    def authenticate(self, username: str, password: str) -> UserInfo | None:
        with self._tx() as s:
            u = s.scalar(select(User).where(User.username == username))
        ok = auth.verify_password(u.password_hash if u else None, password)
        return _user_info(u) if ok and u is not None and u.active else None

    def user_for_token(self, token: str) -> UserInfo | None:
        with self._tx() as s:
            u = s.scalar(select(User).where(User.token_hash == auth.token_hash(token)))
        return _user_info(u) if u is not None and u.active else None

    def create_session(self, user: UserInfo, idle: timedelta | None = None,
                       now: datetime | None = None) -> tuple[str, str]:
        """A new browser session: (cookie token, CSRF token). With `idle`, it ends after that
        long without use (see `session_user`); it ends SESSION_TTL after sign-in regardless."""
        token, csrf = auth.new_token(), auth.new_token()
        now, key = now or utcnow(), auth.keyed_hash(self.secret(), token)
        with self._tx(write=True) as s:
            s.query(AuthSession).filter(AuthSession.expires_at < now).delete()
            s.add(AuthSession(id=key, user_id=user.id, csrf=csrf,
                              created_at=now, expires_at=_session_deadline(now, now, idle)))
        return token, csrf

    def session_user(self, token: str, idle: timedelta | None = None,
                     now: datetime | None = None) -> tuple[UserInfo, str] | None:
        """(user, CSRF token) for a live session cookie, else None. With `idle`, the row's
        `expires_at` is the last use plus `idle` (never past SESSION_TTL after sign-in): each use
        slides it forward, written at most once per `idle`/20 (at most a minute) to spare the
        database, so a session may end up to that much before `idle` has fully passed."""
        key, now = auth.keyed_hash(self.secret(), token), now or utcnow()
        with self._tx() as s:
            row = s.get(AuthSession, key)
            if row is None or row.expires_at < now:
                return None
            u = s.get(User, row.user_id)
            if u is None or not u.active:
                return None
            due = _session_deadline(row.created_at, now, idle)
            slide = idle is not None and abs(due - row.expires_at) > min(idle / 20, timedelta(minutes=1))
        if slide:
            with self._tx(write=True) as s:
                s.execute(update(AuthSession).where(AuthSession.id == key).values(expires_at=due))
        return _user_info(u), row.csrf

    def end_session(self, token: str) -> None:
        key = auth.keyed_hash(self.secret(), token)
        with self._tx(write=True) as s:
            s.query(AuthSession).filter(AuthSession.id == key).delete()

    # ------------------------------------------------------------ projects

    def create_project(self, name: str, kind: str, labels_per_item: int = 1, gold_every: int = 10,
                       active_selection: bool = False, markdown: bool = False, instructions: str | None = None,
                       min_chars: int = 0, form: Any = None) -> ProjectInfo:
        """`labels_per_item` labelers answer each item; one gold item follows every
        `gold_every` regular ones (0: gold items only after the regular ones). `instructions`:
        Markdown shown before the first task and on every task page; `min_chars`: the shortest
        demonstration accepted (demonstration projects); `form`: a rating project's form
        (a `forms.Form` or its declaration; None: InstructGPT's, the default)."""
        check_project_options(kind, instructions, min_chars)
        if not _PROJECT.match(name):
            raise LabelError("a project name is 1-128 letters, digits or . _ -")
        if kind not in KIND_OBJECTS:
            raise LabelError(f"unknown task kind {kind!r}; known: {', '.join(KIND_OBJECTS)}")
        if labels_per_item < 1 or gold_every < 0:
            raise LabelError("labels_per_item must be >= 1 and gold_every >= 0")
        if form is not None:
            if kind != "rating":
                raise LabelError(f"a form is for rating projects, not {kind}")
            try:
                form = (form if hasattr(form, "to_json") else parse_form(form, f"project {name!r}")).to_json()
            except FormError as e:
                raise LabelError(str(e)) from None
        p = Project(name=name, kind=kind, labels_per_item=labels_per_item, gold_every=gold_every,
                    active_selection=active_selection, markdown=markdown, instructions=instructions,
                    min_chars=min_chars, form=form)
        try:
            with self._tx(write=True) as s:
                s.add(p)
                s.flush()
                return _project_info(p)
        except IntegrityError:
            raise Conflict(f"project {name!r} already exists") from None

    def project(self, name: str) -> ProjectInfo:
        with self._tx() as s:
            p = s.scalar(select(Project).where(Project.name == name))
            if p is None:
                raise NotFound(f"no project {name!r}")
            return _project_info(p)

    def projects(self) -> list[ProjectInfo]:
        with self._tx() as s:
            return [_project_info(p) for p in s.scalars(select(Project).order_by(Project.id))]

    # ------------------------------------------------------------ items

    def add_items(self, project: str, items: Sequence[NewItem], max_chars: int | None = None) -> list[int]:
        """Add items in one transaction: all of them, or (on any error) none."""
        p = self.project(project)
        kind = kind_of(p)
        checked = []
        for n, it in enumerate(items):
            try:
                checked.append(validate_new_item(kind, it, **({"max_chars": max_chars} if max_chars else {})))
            except RecordError as e:
                raise LabelError(f"item {n}: {e}") from None
        ids: list[int] = []
        with self._tx(write=True) as s:
            for it in checked:
                # a conversation keeps its messages; the text column holds its transcript
                messages = None if isinstance(it.prompt, str) else as_messages(it.prompt)
                row = Item(project_id=p.id, prompt=prompt_text(it.prompt), messages=messages,
                           responses=list(it.responses), policy=it.policy, is_gold=it.gold is not None,
                           gold=it.gold, meta=dict(it.meta), priority=0.0, context=it.context)
                s.add(row)
                s.flush()
                for pos, (ctype, data) in enumerate(it.media):
                    s.add(Media(item_id=row.id, position=pos, content_type=ctype, sha256=sha256(data), data=data))
                ids.append(row.id)
        return ids

    def add_ranking_item(self, project: str, prompt: Prompt, responses: Sequence[str], *,
                         gold: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> int:
        return self.add_items(project, [NewItem(prompt, tuple(responses), gold=gold, meta=meta or {})])[0]

    def add_rating_item(self, project: str, prompt: Prompt, response: str, *,
                        gold: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> int:
        return self.add_items(project, [NewItem(prompt, (response,), gold=gold, meta=meta or {})])[0]

    def add_pairwise_item(self, project: str, prompt: Prompt, clip_a_path: str | Path | None = None,
                          clip_b_path: str | Path | None = None, *, text_a: str | None = None,
                          text_b: str | None = None, gold: dict[str, Any] | None = None,
                          meta: dict[str, Any] | None = None) -> int:
        """A pairwise item over two clips (GIF/PNG/JPEG/WebP/MP4/WebM files, shown side by
        side) or two texts. The clips' paths (as given) stand for them in exports."""
        if clip_a_path is not None and clip_b_path is not None and text_a is None and text_b is None:
            clips = (str(clip_a_path), str(clip_b_path))
            try:
                media = tuple(load_media(c) for c in clips)
            except RecordError as e:
                raise LabelError(e.message) from None
            item = NewItem(prompt, clips, gold=gold, meta=meta or {}, media=media)
        elif clip_a_path is None and clip_b_path is None and text_a is not None and text_b is not None:
            item = NewItem(prompt, (text_a, text_b), gold=gold, meta=meta or {})
        else:
            raise LabelError("give two clips (clip_a_path, clip_b_path) or two texts (text_a, text_b)")
        return self.add_items(project, [item])[0]

    def set_priorities(self, project: str, scores: Mapping[int, float]) -> None:
        """Queue order for an `active_selection` project: higher first (see feedback/selection.py)."""
        p = self.project(project)
        with self._tx(write=True) as s:
            for item_id, score in scores.items():
                s.execute(update(Item).where(Item.id == int(item_id), Item.project_id == p.id)
                          .values(priority=float(score)))

    def item_ids(self, project: str, gold: bool | None = None) -> list[int]:
        p = self.project(project)
        q = select(Item.id).where(Item.project_id == p.id).order_by(Item.id)
        if gold is not None:
            q = q.where(Item.is_gold == gold)
        with self._tx() as s:
            return list(s.scalars(q))

    @staticmethod
    def _media_refs(s: Session, item_ids: list[int]) -> dict[int, list[MediaRef]]:
        out: dict[int, list[MediaRef]] = {i: [] for i in item_ids}
        for chunk in _chunks(item_ids):
            for m in s.execute(select(Media.item_id, Media.id, Media.position, Media.content_type)
                               .where(Media.item_id.in_(chunk)).order_by(Media.item_id, Media.position)):
                out[m.item_id].append(MediaRef(m.id, m.position, m.content_type))
        return out

    def _view(self, s: Session, item: Item, project: ProjectInfo, media: list[MediaRef] | None = None) -> ItemView:
        if media is None:
            media = self._media_refs(s, [item.id])[item.id]
        prompt = item.prompt if item.messages is None else parse_prompt(item.messages)
        return ItemView(item.id, project, prompt, tuple(item.responses), tuple(media), item.is_gold,
                        item.gold, item.policy, dict(item.meta), item.context)

    def item(self, item_id: int) -> ItemView:
        with self._tx() as s:
            item = s.get(Item, item_id)
            if item is None:
                raise NotFound(f"no item {item_id}")
            return self._view(s, item, _project_info(s.get(Project, item.project_id)))

    def item_for(self, user: UserInfo, item_id: int) -> tuple[ItemView, AnswerView | None]:
        """An item as `user` may see it (assigned to them, or they are an admin), with their
        own answer if any. Never another labeler's answer."""
        view = self.item(item_id)
        with self._tx() as s:
            assigned = s.scalar(select(Assignment.id).where(Assignment.item_id == item_id,
                                                            Assignment.user_id == user.id))
            if assigned is None and not user.is_admin:
                raise NotFound(f"no item {item_id} in your queue")
            mine = s.scalar(select(Answer).where(Answer.item_id == item_id, Answer.user_id == user.id))
            return view, (self._answer_view(mine, user.username) if mine else None)

    def media(self, user: UserInfo, media_id: int) -> tuple[str, bytes]:
        """(content type, bytes) of a clip, for a user the clip's item is assigned to."""
        with self._tx() as s:
            m = s.get(Media, media_id)
            if m is None:
                raise NotFound("no such media")
            if not user.is_admin and s.scalar(select(Assignment.id).where(
                    Assignment.item_id == m.item_id, Assignment.user_id == user.id)) is None:
                raise NotFound("no such media")
            return m.content_type, m.data

    # ------------------------------------------------------------ queue and answers

    def next_item(self, project: str, user: UserInfo) -> ItemView | None:
        """The item `user` should label next in `project`, leased to them; None when done.
        Order: their open lease; a gold item when one is due; a regular item that fewer
        than `labels_per_item` labelers hold (answered or leased); any gold left. A project
        that requires a screening raises ScreeningRequired for a labeler it does not admit."""
        with self._tx(write=True) as s:
            p = s.scalar(select(Project).where(Project.name == project).with_for_update())
            if p is None:
                raise NotFound(f"no project {project!r}")
            self._check_admitted(s, p, user)  # a project that requires a screening: admitted labelers only
            info = _project_info(p)
            mine = select(Assignment.item_id).where(Assignment.user_id == user.id)
            open_lease = s.scalar(select(Assignment).join(Item, Item.id == Assignment.item_id).where(
                Item.project_id == p.id, Assignment.user_id == user.id, Assignment.answered.is_(False))
                .order_by(Assignment.id).limit(1))
            if open_lease is not None:
                open_lease.served_at = utcnow()
                return self._view(s, s.get(Item, open_lease.item_id), info)
            counts = dict(s.execute(select(Item.is_gold, func.count(Answer.id)).join(Item, Item.id == Answer.item_id)
                                    .where(Answer.user_id == user.id, Item.project_id == p.id)
                                    .group_by(Item.is_gold)).all())
            unseen_gold = select(Item).where(Item.project_id == p.id, Item.is_gold.is_(True),
                                             Item.id.not_in(mine)).order_by(Item.id).limit(1)
            item = None
            if p.gold_every > 0 and counts.get(False, 0) >= (counts.get(True, 0) + 1) * p.gold_every:
                item = s.scalar(unseen_gold)
            if item is None:
                cutoff = utcnow() - LEASE
                held = (select(func.count(Assignment.id)).where(
                    Assignment.item_id == Item.id, or_(Assignment.answered.is_(True), Assignment.served_at > cutoff))
                    .scalar_subquery())
                order = (Item.priority.desc(), Item.id) if p.active_selection else (Item.id,)
                item = s.scalar(select(Item).where(Item.project_id == p.id, Item.is_gold.is_(False),
                                                   Item.id.not_in(mine), held < p.labels_per_item)
                                .order_by(*order).limit(1))
            if item is None:
                item = s.scalar(unseen_gold)
            if item is None:
                return None
            s.add(Assignment(item_id=item.id, user_id=user.id, served_at=utcnow(), answered=False))
            return self._view(s, item, info)

    def submit(self, user: UserInfo, item_id: int, client_key: str, payload: Any,
               seconds_active: float | None = None) -> SubmitResult:
        """Store `user`'s answer to an item assigned to them, once. The client key makes a
        retry (double click, lost response, server restart) return the stored answer."""
        if not isinstance(client_key, str) or not _CLIENT_KEY.match(client_key):
            raise LabelError("client_key: 8-64 letters, digits, - or _")
        try:
            with self._tx(write=True) as s:
                # Lock the lease first (PostgreSQL; SQLite writers are serial anyway), so a
                # concurrent retry of this answer waits here and then finds its key below.
                lease = s.scalar(select(Assignment).where(Assignment.item_id == item_id,
                                                          Assignment.user_id == user.id).with_for_update())
                done = self._by_key(s, user, item_id, client_key)
                if done is not None:
                    return done
                if lease is None:
                    raise NotFound(f"no item {item_id} in your queue")
                if lease.answered:
                    raise Conflict("you have already answered this item")
                item = s.get(Item, item_id)
                project = s.get(Project, item.project_id)
                self._check_admitted(s, project, user)  # revoked since the item was leased: refused
                try:
                    answer = validate_answer(kind_of(_project_info(project)), len(item.responses), payload,
                                             project.min_chars or 0)
                except AnswerError as e:
                    raise LabelError(str(e)) from None
                now = utcnow()
                wall = max(0.0, (now - lease.served_at).total_seconds())
                active = None
                if isinstance(seconds_active, (int, float)) and not isinstance(seconds_active, bool):
                    active = min(max(float(seconds_active), 0.0), wall + 5.0)  # the client cannot claim more
                row = Answer(item_id=item_id, user_id=user.id, client_key=client_key, payload=answer,
                             seconds_wall=wall, seconds_active=active, created_at=now)
                s.add(row)
                lease.answered, lease.draft = True, None
                s.flush()
                return SubmitResult(row.id, False)
        except IntegrityError:  # a concurrent retry with the same key won the race
            with self._tx() as s:
                done = self._by_key(s, user, item_id, client_key)
            if done is None:
                raise Conflict("you have already answered this item") from None
            return done

    @staticmethod
    def _by_key(s: Session, user: UserInfo, item_id: int, client_key: str) -> SubmitResult | None:
        row = s.scalar(select(Answer).where(Answer.client_key == client_key))
        if row is None:
            return None
        if row.user_id != user.id or row.item_id != item_id:
            raise Conflict("this client key was already used for another answer")
        return SubmitResult(row.id, True)

    @staticmethod
    def _answer_view(a: Answer, username: str) -> AnswerView:
        return AnswerView(a.id, a.item_id, username, dict(a.payload), a.seconds_wall, a.seconds_active, a.created_at)

    def answers_for(self, item_ids: Sequence[int]) -> dict[int, list[AnswerView]]:
        """Every answer to the given items (all labelers), oldest first; for trusted code
        (the control-task loop, export, the admin page), never shown to labelers."""
        out: dict[int, list[AnswerView]] = {int(i): [] for i in item_ids}
        if not out:
            return out
        with self._tx() as s:
            for chunk in _chunks(list(out)):
                for a, name in s.execute(select(Answer, User.username).join(User, User.id == Answer.user_id)
                                         .where(Answer.item_id.in_(chunk)).order_by(Answer.id)):
                    out[a.item_id].append(self._answer_view(a, name))
        return out

    def items_with_answers(self, project: str) -> list[tuple[ItemView, list[AnswerView]]]:
        """Every item in a project with its answers (export, agreement, the admin page)."""
        p = self.project(project)
        with self._tx() as s:
            items = list(s.scalars(select(Item).where(Item.project_id == p.id).order_by(Item.id)))
            media = self._media_refs(s, [it.id for it in items])
            views = [self._view(s, it, p, media[it.id]) for it in items]
        answers = self.answers_for([v.id for v in views])
        return [(v, answers[v.id]) for v in views]

    def progress(self, project: str, user: UserInfo) -> dict[str, int]:
        """Counts for the labeler's home page: their answers and the project's items."""
        p = self.project(project)
        with self._tx() as s:
            mine = s.scalar(select(func.count(Answer.id)).join(Item, Item.id == Answer.item_id)
                            .where(Item.project_id == p.id, Answer.user_id == user.id)) or 0
            total = s.scalar(select(func.count(Item.id)).where(Item.project_id == p.id)) or 0
        return {"answered": mine, "items": total}

    def count_answers(self, project: str | None = None) -> int:
        q = select(func.count(Answer.id))
        if project is not None:
            q = q.join(Item, Item.id == Answer.item_id).where(Item.project_id == self.project(project).id)
        with self._tx() as s:
            return s.scalar(q) or 0
