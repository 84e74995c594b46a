"""`rlhfkit label serve | import | export | screening | users add | users list | users disable`.

The database is `--db URL` (a file path or `sqlite:///path` for SQLite, `postgresql://...`
for PostgreSQL), else $RLHFKIT_LABEL_DB, else `labels.db` in the working directory.
Heavy imports (FastAPI, SQLAlchemy) wait until a command runs, so `rlhfkit --help` works
without the `label` extra installed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from rlhfkit.command import Command, Flag
from rlhfkit.errors import UserError

DEFAULT_DB = "labels.db"
_DB = Flag("--db", "db", "database URL or SQLite file (default: $RLHFKIT_LABEL_DB or labels.db)")


def _open(ns: argparse.Namespace) -> Any:
    try:
        from rlhfkit.labeling.store import LabelStore
    except ImportError as e:  # pragma: no cover - depends on the install
        raise UserError(f"the labeling app needs `pip install rlhfkit[label]` ({e})") from e
    url = getattr(ns, "flag__db", None) or os.environ.get("RLHFKIT_LABEL_DB") or DEFAULT_DB
    return LabelStore.open(url)


def _get(ns: argparse.Namespace, name: str, default: Any = None) -> Any:
    value = getattr(ns, "flag__" + name, None)
    return default if value is None else value


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def serve(ns: argparse.Namespace) -> None:
    import uvicorn

    from rlhfkit.labeling.app import IDLE_TIMEOUT, create_app
    from rlhfkit.labeling.ratelimit import LoginLimits
    from rlhfkit.logging import get_logger

    d, idle = LoginLimits(), _get(ns, "idle_timeout", IDLE_TIMEOUT)
    try:
        limits = LoginLimits(_get(ns, "login_attempts", d.per_account),
                             _get(ns, "login_attempts_per_address", d.per_address), _get(ns, "login_window", d.window))
    except ValueError as e:
        raise UserError(str(e)) from e
    if idle < 0:
        raise UserError("--idle-timeout is seconds >= 0 (0: sessions never idle out)")
    store = _open(ns)
    host, port = _get(ns, "host", "127.0.0.1"), _get(ns, "port", 8000)
    secure = False if _get(ns, "insecure_cookies", False) else None
    if secure is False:
        get_logger(__name__).warning("cookies without the Secure flag: use this only behind no network you distrust")
    if not store.users():
        get_logger(__name__).warning("no users yet: add one with `rlhfkit label users add NAME --role admin`")
    app = create_app(store, secure_cookies=secure, login_limits=limits, idle_timeout=idle)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5)


def import_(ns: argparse.Namespace) -> None:
    from rlhfkit.labeling.importing import import_file
    from rlhfkit.labeling.store import NotFound
    from rlhfkit.logging import get_logger

    instructions, min_chars = _instructions(_get(ns, "instructions")), _get(ns, "min_chars")
    form = _form(_get(ns, "form"))
    store = _open(ns)
    name = _get(ns, "project", "default")
    kind = _get(ns, "kind")
    try:
        project = store.project(name)
        if kind is not None and kind != project.kind:
            raise UserError(f"project {name!r} is a {project.kind} project, not {kind}")
        _same_form(project, form)
        if instructions is not None or min_chars is not None:  # these two may change on an existing project
            store.set_project_options(name, instructions=instructions, min_chars=min_chars)
    except NotFound:
        store.create_project(name, kind or ("rating" if form else "ranking"),
                             labels_per_item=_get(ns, "labels_per_item", 1),
                             gold_every=_get(ns, "gold_every", 10),
                             active_selection=bool(_get(ns, "active_selection", False)),
                             markdown=bool(_get(ns, "markdown", False)), instructions=instructions,
                             min_chars=min_chars or 0, form=form)
    if _get(ns, "screening") is not None:  # `none` lifts the requirement
        store.require_screening(name, None if ns.flag__screening == "none" else ns.flag__screening)
    ids = import_file(store, name, ns.FILE, allow_urls=bool(_get(ns, "allow_urls", False)),
                      max_chars=_get(ns, "max_chars", 20_000))
    get_logger(__name__).info("imported %d items into project %r", len(ids), name)


def _form(spec: str | None) -> Any:
    """The form of `--form NAME|FILE` (forms.py: a shipped example, or YAML/JSON), or None."""
    if spec is None:
        return None
    from rlhfkit.labeling.forms import load_form

    return load_form(spec)


def _same_form(project: Any, form: Any) -> None:
    """A project's form is fixed once made (its answers follow it): `--form` may only repeat it."""
    from rlhfkit.labeling.kinds import kind_of

    if form is None:
        return
    if project.kind != "rating":
        raise UserError(f"--form is for rating projects; {project.name!r} is a {project.kind} project")
    have = kind_of(project).form  # type: ignore[attr-defined]
    if have.to_json() != form.to_json():
        raise UserError(f"project {project.name!r} has the form {have.name!r}, which cannot change (its answers "
                        "follow it): import into a new project, or leave --form out")


def _instructions(path: str | None) -> str | None:
    """The Markdown of `--instructions FILE` (UTF-8), or None when not given."""
    if path is None:
        return None
    try:
        return open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--instructions {path}: cannot read it as UTF-8 text ({e})") from None


def export(ns: argparse.Namespace) -> None:
    from rlhfkit.labeling.export import export_file
    from rlhfkit.logging import get_logger

    log = get_logger(__name__)
    out = _get(ns, "out")
    if out is None:
        raise UserError("label export needs --out FILE")
    fmt = _get(ns, "format", "records")
    summary = export_file(_open(ns), out, _get(ns, "project"), _get(ns, "min_gold_agreement"), fmt)
    if fmt == "trl":
        log.info("wrote %d %s rows (from %d records, %d answers) to %s", summary.rows, summary.columns,
                 summary.records, summary.answers, out)
        left = [f"{why}: {n}" for why, n in sorted(summary.skipped.items())]
        why = ("TRL's format cannot say tie, and only pairs are preferences" if "chosen" in summary.columns
               else "only binary feedback makes TRL's unpaired rows")
        if left:
            log.info("left out: %s (%s)", ", ".join(left), why)
    else:
        log.info("wrote %d records (%d answers) to %s", summary.records, summary.answers, out)
    if summary.no_judgment:
        log.info("%d answers said \"can't tell\" and give no record (no judgment)", summary.no_judgment)
    if not summary.rows:
        log.warning("%s holds nothing to train on", out)
    if summary.dropped_labelers:
        log.info("dropped labelers below the gold-agreement threshold: %s", ", ".join(summary.dropped_labelers))
    if summary.unchecked_labelers:
        log.warning("kept labelers who answered no gold item: %s", ", ".join(sorted(set(summary.unchecked_labelers))))


def screening(ns: argparse.Namespace) -> None:
    """Create a screening, make a project require it, set thresholds, admit or revoke; then
    print the project's candidates with their four scores (screening.py)."""
    from rlhfkit.labeling import screening as sc

    store, project = _open(ns), _get(ns, "project")
    if _get(ns, "create") is not None:
        made = store.create_screening(**sc.read_config(ns.flag__create))
        _out(f"created screening {made.name}: " + ", ".join(f"{k} {v}" for k, v in made.parts())
             + (f", {len(made.topics)} self-assessment topics" if made.topics else ""))
    if project is None:
        if any(_get(ns, k) for k in ("require", "threshold", "admit", "revoke", "admit_passing")):
            raise UserError("--require, --threshold, --admit, --revoke and --admit-passing need --project")
        return
    if _get(ns, "require") is not None:
        store.require_screening(project, None if ns.flag__require == "none" else ns.flag__require)
    if _get(ns, "threshold"):
        wanted = dict(store.project(project).thresholds or {})
        for spec in ns.flag__threshold:
            key, sep, value = spec.partition("=")
            if not sep:
                raise UserError(f"--threshold {spec}: expected SCORE=VALUE (an empty VALUE removes it)")
            wanted[key.strip()] = value.strip() or None
        store.set_thresholds(project, wanted)
    for name in _get(ns, "admit", []):
        store.decide(project, name, True, None)
    for name in _get(ns, "revoke", []):
        store.decide(project, name, False, None)
    if _get(ns, "admit_passing", False):
        admitted = sc.admit_passing(store, project, None)
        _out(f"admitted {len(admitted)} who meet the thresholds: {', '.join(admitted) or '-'}")
    _out(sc.format_table(sc.screening_table(store, project)))


def users_add(ns: argparse.Namespace) -> None:
    password = None
    if _get(ns, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\n")
    elif not _get(ns, "token", False) or _get(ns, "password", False):
        if not sys.stdin.isatty():
            raise UserError("no terminal to ask for a password: use --password-stdin or --token")
        password = getpass.getpass(f"password for {ns.NAME}: ")
        if getpass.getpass("again: ") != password:
            raise UserError("the passwords differ")
    user, token = _open(ns).add_user(ns.NAME, password, _get(ns, "role", "labeler"), bool(_get(ns, "token", False)))
    _out(f"added {user.role} {user.username}")
    if token:
        _out(f"API token (shown once; send it as 'Authorization: Bearer TOKEN'): {token}")


def users_list(ns: argparse.Namespace) -> None:
    for u in _open(ns).users():
        how = "+".join(x for x, has in (("password", u.has_password), ("token", u.has_token)) if has)
        _out(f"{u.username}\t{u.role}\t{'active' if u.active else 'disabled'}\t{how}")


def users_disable(ns: argparse.Namespace) -> None:
    _open(ns).set_active(ns.NAME, False)
    _out(f"disabled {ns.NAME} (their labels stay)")


COMMANDS: list[Command] = [
    Command("label serve", "serve the labeling web app", serve, common=False, flags=(
        _DB,
        Flag("--host", "host", "address to listen on (default 127.0.0.1)"),
        Flag("--port", "port", "port (default 8000)", type=int),
        Flag("--insecure-cookies", "insecure_cookies", "send session cookies over plain HTTP off loopback "
             "(default: Secure cookies except on loopback)", action="store_true"),
        Flag("--login-attempts", "login_attempts", "failed sign-ins per account within --login-window before "
             "429 (default 5)", type=int),
        Flag("--login-attempts-per-address", "login_attempts_per_address", "failed sign-ins per client address "
             "within --login-window before 429 (default 20)", type=int),
        Flag("--login-window", "login_window", "seconds a failed sign-in counts (default 60)", type=float),
        Flag("--idle-timeout", "idle_timeout", "seconds a browser session may go unused before it ends "
             "(default 1800; 0: never)", type=float),
    )),
    Command("label import", "import prompts + responses (or clips) as items to label", import_, common=False, flags=(
        Flag("FILE", "FILE", "JSONL from `rlhfkit sample`, or rows {prompt, responses} / {prompt, clips} / "
             "{prompt, context} (demonstration)",
             positional=True),
        _DB,
        Flag("--project", "project", "project to add to (created if missing; default 'default')"),
        Flag("--kind", "kind", "task kind of a new project: ranking (default; rating with --form), pairwise, "
             "rating, demonstration or thumbs"),
        Flag("--form", "form", "a rating project's form: instructgpt (the default), realtoxicity, or a YAML/JSON "
             "file of fields (likert, flags, choice, text; docs/labeling.md)"),
        Flag("--labels-per-item", "labels_per_item", "labelers per item, for a new project (default 1)", type=int),
        Flag("--gold-every", "gold_every", "one gold item after every N regular ones, new project (default 10)",
             type=int),
        Flag("--active-selection", "active_selection", "order the queue by ensemble disagreement (new project)",
             action="store_true"),
        Flag("--markdown", "markdown", "render model text as markdown, no raw HTML (new project)", action="store_true"),
        Flag("--allow-urls", "allow_urls", "fetch clips given as http(s) URLs (off by default)", action="store_true"),
        Flag("--max-chars", "max_chars", "longest prompt or response accepted (default 20000)", type=int),
        Flag("--instructions", "instructions", "Markdown file of instructions for the labelers, shown before "
             "the first task and on every task (no raw HTML); replaces an existing project's"),
        Flag("--min-chars", "min_chars", "shortest demonstration accepted, in characters (demonstration "
             "projects; changes an existing project's; default 0)", type=int),
        Flag("--screening", "screening", "give the project's items only to labelers admitted after this "
             "screening (`label screening --create`); `none` lifts it"),
    )),
    Command("label screening", "labeler screening: create one, make a project require it, set thresholds, "
            "admit or revoke, and print a project's candidates with their four scores", screening, common=False,
            flags=(
                _DB,
                Flag("--create", "create", "create a screening from a YAML/JSON file: name, flags, ranking, "
                     "demonstration (project names), topics (docs/labeling.md)"),
                Flag("--project", "project", "the project whose candidates to show (and to act on)"),
                Flag("--require", "require", "make --project require this screening (`none` lifts it)"),
                Flag("--threshold", "threshold", "SCORE=VALUE, SCORE one of flags, ranking, demonstration, "
                     "self_assessment; an empty VALUE removes it (repeatable)", action="append"),
                Flag("--admit", "admit", "admit this labeler to --project by hand (repeatable)", action="append"),
                Flag("--revoke", "revoke", "revoke this labeler's admission (repeatable)", action="append"),
                Flag("--admit-passing", "admit_passing", "admit everyone who meets --project's thresholds",
                     action="store_true"),
            )),
    Command("label export", "write the labels as records for `rlhfkit rm --data` (thumbs: `kto --data`)", export,
            common=False, flags=(
        _DB,
        Flag("--out", "out", "output file (.jsonl, or .parquet)"),
        Flag("--format", "format", "records (ours, default) or trl: TRL's prompt/chosen/rejected pairs "
             "(rankings as their strict pairs; ties, can't tell and ratings left out), or for a thumbs project "
             "TRL's unpaired prompt/completion/label rows", choices=("records", "trl")),
        Flag("--project", "project", "only this project (default: all)"),
        Flag("--min-gold-agreement", "min_gold_agreement",
             "drop labelers whose agreement with gold items is below this (0..1)", type=float),
    )),
    Command("label users add", "add a labeler or admin", users_add, common=False, flags=(
        Flag("NAME", "NAME", "username", positional=True),
        _DB,
        Flag("--role", "role", "admin or labeler (default labeler)", choices=("admin", "labeler")),
        Flag("--password-stdin", "password_stdin", "read the password from standard input", action="store_true"),
        Flag("--password", "password", "also ask for a password when --token is given", action="store_true"),
        Flag("--token", "token", "issue an API token (printed once)", action="store_true"),
    )),
    Command("label users list", "list users", users_list, common=False, flags=(_DB,)),
    Command("label users disable", "disable a user (their labels are kept)", users_disable, common=False, flags=(
        Flag("NAME", "NAME", "username", positional=True),
        _DB,
    )),
]
