"""Labeler screening, as InstructGPT selected its labelers (Ouyang et al. 2022, sec. 3.4 and
appendix B.1): candidates take a screening, admins see four scores per candidate and admit
those above thresholds they set; a project that requires the screening gives its items to
admitted labelers only (the store refuses the others: `ScreeningRequired`).

The four scores (each None until the candidate has done that part):
  flags           agreement with researchers' gold answers on sensitive-content flags: over the
                  gold items of the screening's rating project, the share of (item, flag) pairs
                  where the candidate set the flag exactly when the researcher did, in [0, 1]
  ranking         agreement with gold rankings: the mean over the gold items of the screening's
                  ranking project of the share of response pairs ordered as the researcher did
                  (kinds.RankingKind.gold_agreement), in [0, 1]
  demonstration   the mean of admins' 1-7 ratings of the candidate's written demonstrations
                  (quality.demonstration_scores), in [1, 7]
  self_assessment the candidate's mean comfort, 1-5, over the screening's topics (how comfortable
                  they are judging each: InstructGPT's self-assessed ability to identify sensitive
                  speech across topics and groups), in [1, 5]

A candidate meets a project's thresholds when every threshold set is met by a score that exists;
with no threshold set, no one meets them (admins then admit by hand). Admission is a decision
recorded in the store (who, when, how: by hand or by the thresholds), never computed on the fly:

    store.create_screening("screen", flags="screen-flags", ranking="screen-rank",
                           demonstration="screen-demos", topics=["Medical advice", "Violence"])
    store.require_screening("chat", "screen")
    store.set_thresholds("chat", Thresholds(flags=0.75, ranking=0.6, demonstration=5, self_assessment=3))
    admit_passing(store, "chat", admin)       # or store.decide("chat", "ann", True, admin)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from rlhfkit.labeling.kinds import Kind, kind_of
from rlhfkit.labeling.quality import demonstration_scores, project_quality
from rlhfkit.labeling.views import LabelError

if TYPE_CHECKING:
    from rlhfkit.labeling.screening_store import AdmissionView, ScreeningInfo
    from rlhfkit.labeling.store import LabelStore, UserInfo

SCORES: tuple[str, ...] = ("flags", "ranking", "demonstration", "self_assessment")
SCALES: dict[str, tuple[float, float]] = {"flags": (0.0, 1.0), "ranking": (0.0, 1.0), "demonstration": (1.0, 7.0),
                                          "self_assessment": (1.0, 5.0)}
LABELS: dict[str, str] = {"flags": "Flag agreement", "ranking": "Ranking agreement",
                          "demonstration": "Demonstration score", "self_assessment": "Self-assessment"}
COMFORT: tuple[int, ...] = (1, 2, 3, 4, 5)  # 1: not comfortable judging this topic, 5: very comfortable


@dataclass(frozen=True)
class Thresholds:
    """A project's admission thresholds, one per score; None: that score is not required."""

    flags: float | None = None
    ranking: float | None = None
    demonstration: float | None = None
    self_assessment: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "Thresholds":
        """Checked: known scores only, each a number on its score's scale (or None)."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(SCORES))
        if unknown:
            raise LabelError(f"thresholds: {unknown[0]!r} is not a score ({', '.join(SCORES)})")
        out: dict[str, float | None] = {}
        for name in SCORES:
            value = data.get(name)
            if value is None or value == "":
                out[name] = None
                continue
            lo, hi = SCALES[name]
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = float("nan")
            if isinstance(value, bool) or not lo <= number <= hi:  # NaN fails this too
                raise LabelError(f"thresholds: {name} is a number from {lo:g} to {hi:g}, got {value!r}")
            out[name] = number
        return cls(**out)

    def to_json(self) -> dict[str, float]:
        """The thresholds set (a score left out is not required)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class Scores:
    """A candidate's four scores and how many answers each rests on."""

    labeler: str
    flags: float | None = None
    flags_items: int = 0  # gold items of the flags part answered
    ranking: float | None = None
    ranking_items: int = 0  # gold items of the ranking part answered
    demonstration: float | None = None
    demonstrations_rated: int = 0  # written demonstrations rated by an admin
    demonstrations_written: int = 0
    self_assessment: float | None = None

    def get(self, name: str) -> float | None:
        if name not in SCORES:
            raise KeyError(name)
        return getattr(self, name)

    def to_json(self) -> dict[str, float | None]:
        return {name: self.get(name) for name in SCORES}


def meets(scores: Scores, thresholds: Thresholds) -> bool:
    """Every threshold set is met by a score that exists (and at least one threshold is set)."""
    wanted = thresholds.to_json()
    return bool(wanted) and all((v := scores.get(k)) is not None and v >= t for k, t in wanted.items())


# ---------------------------------------------------------------- the scores, from answers

def flag_agreement(kind: Kind, items_with_answers: Iterable[tuple[Any, list[Any]]]) -> dict[str, tuple[float, int]]:
    """Per labeler: (share of (gold item, flag) pairs set as the researcher set them, gold items
    answered), over the flags fields of the project's form (InstructGPT's: its eight flags)."""
    flag_fields = [f for f in kind.form.fields if f.type == "flags"]  # type: ignore[attr-defined]
    agree: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # agreeing units, units, items
    for item, answers in items_with_answers:
        if item.gold is None:
            continue
        for a in answers:
            tally = agree[a.labeler]
            tally[2] += 1
            for f in flag_fields:
                gold = dict(f.units(item.gold.get(f.name) or []))
                for flag, on in f.units(a.payload.get(f.name) or []):
                    tally[0] += on == gold[flag]
                    tally[1] += 1
    return {name: (t[0] / t[1], t[2]) for name, t in sorted(agree.items()) if t[1]}


def self_assessment_score(answers: Mapping[str, int] | None, topics: Sequence[str]) -> float | None:
    """The mean comfort (1-5) over the screening's topics; None before the candidate answers."""
    got = [answers[t] for t in topics if answers and t in answers]
    return sum(got) / len(got) if got else None


def candidate_scores(store: "LabelStore", screening: "ScreeningInfo") -> dict[str, Scores]:
    """Every candidate of a screening (a labeler, not an admin, who answered any of its parts)
    with their four scores."""
    flags: dict[str, tuple[float, int]] = {}
    ranking: dict[str, tuple[float, int]] = {}
    demo: dict[str, tuple[float, int]] = {}
    written: dict[str, int] = defaultdict(int)
    if screening.flags:
        p = store.project(screening.flags)
        flags = flag_agreement(kind_of(p), store.items_with_answers(p.name))
    if screening.ranking:
        p = store.project(screening.ranking)
        # the per-labeler gold agreement the project's quality report computes (quality.py)
        ranking = {s.labeler: (s.gold_agreement, s.gold_answers)
                   for s in project_quality(kind_of(p), store.items_with_answers(p.name)).labelers
                   if s.gold_agreement is not None}
    if screening.demonstration:
        rows = store.items_with_answers(screening.demonstration)
        rated = demonstration_scores(rows, store.demonstration_ratings(screening.demonstration))
        demo = {name: (s.score, s.rated) for name, s in rated.items()}
        for _item, answers in rows:
            for a in answers:
                written[a.labeler] += 1
    selfs = store.self_assessments(screening.name)
    admins = {u.username for u in store.users() if u.is_admin}
    names = (set(flags) | set(ranking) | set(written) | set(selfs)) - admins
    out = {}
    for name in sorted(names):
        f, r, d = flags.get(name, (None, 0)), ranking.get(name, (None, 0)), demo.get(name, (None, 0))
        out[name] = Scores(name, flags=f[0], flags_items=f[1], ranking=r[0], ranking_items=r[1],
                           demonstration=d[0], demonstrations_rated=d[1], demonstrations_written=written.get(name, 0),
                           self_assessment=self_assessment_score(selfs.get(name), screening.topics))
    return out


CONFIG_KEYS: tuple[str, ...] = ("name", "flags", "ranking", "demonstration", "topics")


def read_config(path: str | Path) -> dict[str, Any]:
    """A screening declared in YAML (or JSON, which YAML reads too), for `store.create_screening`:

        name: screen-2025
        flags: screen-flags            # a rating project of gold items with flags
        ranking: screen-rank           # a ranking project of gold items
        demonstration: screen-demos    # a demonstration project (admins rate the answers)
        topics: [Medical advice, Violence, Politics]   # the self-assessment
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise LabelError(f"{path}: cannot read it as a YAML or JSON screening ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise LabelError(f"{path}: a screening is a mapping with a name ({', '.join(CONFIG_KEYS)})")
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise LabelError(f"{path}: {unknown[0]!r} is not a screening key ({', '.join(CONFIG_KEYS)})")
    return {"topics": [], **data}


# ---------------------------------------------------------------- a project's candidates, admission

@dataclass(frozen=True)
class Candidate:
    scores: Scores
    meets: bool  # the project's thresholds
    admission: "AdmissionView | None"  # the latest decision about them, if any

    @property
    def admitted(self) -> bool:
        return self.admission is not None and self.admission.admitted


@dataclass(frozen=True)
class ScreeningTable:
    project: str
    screening: "ScreeningInfo"
    thresholds: Thresholds
    candidates: list[Candidate]


def screening_table(store: "LabelStore", project: str) -> ScreeningTable:
    """The candidates for a project that requires a screening: their scores, whether they meet
    the project's thresholds, and the latest admission decision about each."""
    p = store.project(project)
    if p.screening is None:
        raise LabelError(f"project {project!r} requires no screening (store.require_screening, or "
                         "`rlhfkit label import --screening NAME`)")
    screening = store.screening(p.screening)
    thresholds = Thresholds.from_json(p.thresholds)
    scores = candidate_scores(store, screening)
    admissions = store.admissions(project)
    for name in admissions:  # admitted or revoked by hand before doing anything: still listed
        scores.setdefault(name, Scores(name))
    rows = [Candidate(s, meets(s, thresholds), admissions.get(name)) for name, s in sorted(scores.items())]
    return ScreeningTable(project, screening, thresholds, rows)


def admit_passing(store: "LabelStore", project: str, admin: "UserInfo | None") -> list[str]:
    """Admit every candidate who meets the project's thresholds and is not admitted yet (one
    recorded decision each, `how="thresholds"`), except those an admin revoked by hand, whom
    only a decision by hand admits again. Returns who was admitted."""
    table = screening_table(store, project)
    admitted = []
    for c in table.candidates:
        revoked_by_hand = c.admission is not None and not c.admission.admitted and c.admission.how == "by hand"
        if c.meets and not c.admitted and not revoked_by_hand:
            store.decide(project, c.scores.labeler, True, admin, how="thresholds", scores=c.scores.to_json())
            admitted.append(c.scores.labeler)
    return admitted


def _cell(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def format_table(table: ScreeningTable) -> str:
    """The table as tab-separated text (`rlhfkit label screening --project P`)."""
    wanted = table.thresholds.to_json()
    head = ["labeler", *(f"{n}>={wanted[n]:g}" if n in wanted else n for n in SCORES), "meets", "admitted", "by"]
    lines = ["\t".join(head)]
    for c in table.candidates:
        a = c.admission
        standing = "-" if a is None else ("yes" if a.admitted else "revoked")
        by = "-" if a is None else f"{a.by or 'command line'} ({a.how}, {a.at:%Y-%m-%d %H:%M})"
        lines.append("\t".join([c.scores.labeler, *(_cell(c.scores.get(n)) for n in SCORES),
                                "yes" if c.meets else "no", standing, by]))
    return "\n".join(lines)
