"""The model in the loop: preferences collected in rounds on the current policy's samples
(Bai et al. 2022, "iterated online RLHF"; Touvron et al. 2023, sec. 3.2.3, iterative fine-tuning).

`rlhfkit label refresh` samples K fresh responses from a policy for prompts the project has not
had yet and adds them as ranking items (or, in a pairwise project, their C(K, 2) pairs) through
the store, outside the web app: the app serves text and runs no model. `rlhfkit label rounds`
runs the whole loop with simulated labelers answering through the app's JSON API:

    round 0: the SFT policy (given, or pretrained and fine-tuned here as the quickstart does)
    for r in 1..R:
        refresh: K responses per new prompt from the current policy -> items in the store
        label:   start the server; the labelers lease and answer every item over HTTP; stop it
        export:  every label so far -> records (labeling/export.py)
        rm:      a reward model on all of them, from the last round's     (ppo)
                 (round 1: from the SFT backbone)
        policy:  PPO from the current policy against it, KL to where the round started,
                 or DPO from the current policy on this round's labels     (dpo)
        gold:    the task's gold score of the new policy on held-out prompts

Every acknowledged answer must be in the database: the report counts the answers the server
acknowledged, the ones stored, and the acknowledged ones missing (lost), with the server
restarted every round. It ends with `report.md`, `summary.json` and `gold_by_round.png`.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from rlhfkit.config import F, ModelConfig, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.logging import get_logger
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.tasks.base import Gold, Task, gold_of, load_task, task_prompts
from rlhfkit.train.supervised import OptimConfig

log = get_logger(__name__)
DEFAULT_DB = "labels.db"  # as `rlhfkit label ...` (labeling/commands.py)


@dataclass
class RefreshConfig(RunConfig):
    db: str | None = F(None, "label database: a file, sqlite:///path or postgresql://...; default "
                             "$RLHFKIT_LABEL_DB, else labels.db")
    project: str = F("default", "project to add the items to (created if missing)")
    kind: Literal["ranking", "pairwise"] | None = F(None, "kind of a new project (default ranking): one item of "
                                                          "K responses, or C(K, 2) pairwise items per prompt")
    policy: str | None = F(None, "the current policy folder, to sample from")
    task: str = F("reviews", "the task whose prompts to draw: reviews (embedded), module:attribute, or a prompts file")
    split: str = F("rm", "which of the task's prompt streams: train, rm, rl or eval")
    task_seed: int = F(0, "seed of the embedded task's generator")
    n_prompts: int = F(100, "new prompts (the stream's next ones, after those the project has)")
    k: int = F(4, "responses per prompt")
    labels_per_item: int = F(1, "labelers per item, for a new project")
    round: int | None = F(None, "round number kept in each item's meta (default: one past the project's last)")
    max_new_tokens: int = F(40, "max response tokens")
    temperature: float = F(1.0, "sampling temperature")
    top_k: int = F(0, "top-k filter (0: off)")
    batch_size: int = F(128, "sequences per generate call")


def _stream_position(store: Any, project: str) -> tuple[int, int]:
    """(next prompt index, last round) of a project's items, from their meta (0, 0 when none)."""
    index, last = 0, 0
    for item, _ in store.items_with_answers(project):
        index = max(index, int(item.meta.get("prompt_index", -1)) + 1)
        last = max(last, int(item.meta.get("round", 0)))
    return index, last


def refresh_items(store: Any, project: str, model: Any, tokenizer: Any, task: Task, *, n_prompts: int, k: int,
                  split: str = "rm", round_: int | None = None, policy_name: str | None = None,
                  batch_size: int = 128, **gen_kwargs: Any) -> list[int]:
    """Sample `k` responses for each of the task's next `n_prompts` prompts (those after the
    project's last `prompt_index`) and add them to `project` as items of its kind, split as
    `label import` splits a row; each item's meta holds its round and prompt index."""
    from rlhfkit.feedback.records import record_to_dict
    from rlhfkit.labeling.importing import row_to_items
    from rlhfkit.lm.sampling import sample_completions

    kind = store.project(project).kind
    if kind not in ("ranking", "pairwise"):
        raise UserError(f"label refresh: project {project!r} is a {kind} project; refresh fills ranking "
                        "and pairwise projects")
    if k < 2:
        raise UserError(f"label refresh: a {kind} item needs at least 2 responses per prompt (k={k})")
    start, last = _stream_position(store, project)
    round_ = last + 1 if round_ is None else round_
    prompts = task_prompts(task, start + n_prompts, split)[start:]
    completions = sample_completions(model, tokenizer, prompts, k, batch_size, policy_name=policy_name,
                                     desc=f"refresh round {round_}", **gen_kwargs)
    items = []
    for i, c in enumerate(completions):
        row = {**record_to_dict(c), "meta": {"round": round_, "prompt_index": start + i}}
        items.extend(row_to_items(kind, row, Path(".")))
    ids = store.add_items(project, items)
    log.info("label refresh: %d %s items for prompts %d..%d (round %d) in project %r", len(ids), kind, start,
             start + n_prompts - 1, round_, project)
    return ids


def _open_store(db: str | None) -> Any:
    try:
        from rlhfkit.labeling.store import LabelStore
    except ImportError as e:  # pragma: no cover - depends on the install
        raise UserError(f"the labeling store needs `pip install rlhfkit[label]` ({e})") from e
    return LabelStore.open(db or os.environ.get("RLHFKIT_LABEL_DB") or DEFAULT_DB)


def _project(store: Any, name: str, kind: str | None, labels_per_item: int = 1) -> str:
    """The project's kind; a missing project is created (`kind`, default ranking)."""
    from rlhfkit.labeling.store import NotFound

    try:
        have = store.project(name).kind
    except NotFound:
        return store.create_project(name, kind or "ranking", labels_per_item=labels_per_item).kind
    if kind is not None and kind != have:
        raise UserError(f"project {name!r} is a {have} project, not {kind}")
    return have


def run_refresh(cfg: RefreshConfig) -> dict:
    from rlhfkit.lm.models import load_policy

    if cfg.policy is None:
        raise UserError("label refresh: give the current policy with --policy PATH")
    seed_everything(cfg.seed)
    run_dir = RunDir.create(cfg.out or "runs/label-refresh", cfg)
    store = _open_store(cfg.db)
    try:
        kind = _project(store, cfg.project, cfg.kind, cfg.labels_per_item)
        model, tok = load_policy(cfg.policy)
        ids = refresh_items(store, cfg.project, model, tok, load_task(cfg.task, cfg.task_seed), n_prompts=cfg.n_prompts,
                            k=cfg.k, split=cfg.split, round_=cfg.round, policy_name=cfg.policy,
                            batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                            temperature=cfg.temperature, top_k=cfg.top_k)
    finally:
        store.close()
    summary = {"project": cfg.project, "kind": kind, "items": len(ids), "prompts": cfg.n_prompts, "k": cfg.k,
               "first_item": ids[0] if ids else None, "last_item": ids[-1] if ids else None}
    run_dir.write_summary(summary)
    return summary


# ---------------------------------------------------------------- the rounds loop

@dataclass
class RoundsConfig(RunConfig):
    fast: bool = F(False, "tiny sizes everywhere: a smoke run (tests)")
    rounds: int = F(3, "rounds of refresh -> label -> export -> rm -> ppo/dpo")
    policy: str | None = F(None, "round-0 policy (an SFT folder, e.g. a quickstart's sft/final); default: "
                                 "pretrain and SFT a tiny GPT here first, as the quickstart does")
    task: str = F("reviews", "the task: its prompts, and the gold scorer the simulated labelers share")
    kind: Literal["ranking", "pairwise"] = F("ranking", "items: K responses ranked, or their C(K, 2) pairs")
    method: Literal["ppo", "dpo"] = F("ppo", "ppo: a reward model on all labels so far, then PPO; dpo: DPO on "
                                             "this round's labels")
    prompts_per_round: int = F(400, "new prompts each round")
    k: int = F(4, "responses per prompt")
    labelers: int = F(4, "simulated labelers answering over HTTP, one API token each (feedback's pool, cycled)")
    db: str | None = F(None, "label database; default <out>/labels.db (the project must not exist yet)")
    project: str = F("rounds", "label project")
    label_deadline: float = F(600.0, "seconds the labelers may take in one round")
    # the round-0 policy when --policy is not given (pipeline.sft_policy)
    model: ModelConfig = F(ModelConfig(n_positions=64), "tiny GPT to build, or model.path: an LM to SFT")
    pretrain_docs: int = F(23000, "documents in the pretraining corpus")
    pretrain_epochs: float = F(1.0, "passes over the corpus")
    sft_demos: int = F(3000, "demonstrations for SFT")
    # each round
    rm_epochs: float = F(2.0, "epochs of a reward model started from the SFT backbone, over all labels so far")
    rm_warm_start: bool = F(True, "start each round's reward model from the last round's (round 1: the SFT "
                                  "backbone); false: from the SFT backbone every round")
    rm_warm_epochs: float = F(1.0, "epochs of a warm-started reward model over all labels so far (it has seen "
                                   "all but the last round's already)")
    rm_lr: float = F(3e-4, "reward-model learning rate")
    ppo_iterations: int = F(6, "PPO rollout batches per round")
    rollout_prompts: int = F(32, "prompts per PPO rollout batch")
    beta: float = F(0.1, "PPO's KL penalty, to the policy the round starts from")
    rl_lr: float = F(1e-4, "PPO learning rate")
    dpo_beta: float = F(0.1, "DPO beta (the reference is the policy the round starts from)")
    dpo_lr: float = F(1e-4, "DPO learning rate")
    dpo_epochs: float = F(2.0, "DPO epochs over the round's labels")
    eval_prompts: int = F(400, "held-out prompts for the gold score")
    max_new_tokens: int = F(40, "max response tokens everywhere")


def fast_rounds(cfg: RoundsConfig) -> RoundsConfig:
    return replace(cfg, model=replace(cfg.model, n_layer=2, n_embd=64, n_head=2, vocab_size=512, n_positions=128),
                   pretrain_docs=1500, sft_demos=300, prompts_per_round=12, k=3, rm_epochs=1.0, ppo_iterations=2,
                   rollout_prompts=8, dpo_epochs=1.0, eval_prompts=16, max_new_tokens=16)


def _gold_batch(gold: Gold):
    return lambda prompt, responses: gold.batch([prompt] * len(responses), list(responses))


def label_round(url: str, project: str, tokens: dict[str, str], gold: Gold, seed: int,
                deadline_s: float) -> list[Any]:
    """Every labeler answers the project's queue over HTTP, concurrently, until it is empty;
    returns the acknowledgements (labeling/client.py Ack)."""
    from rlhfkit.feedback.labelers import default_pool
    from rlhfkit.labeling.client import answer_queue, simulated_answer

    pool = default_pool()
    acks: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(n: int, token: str) -> None:
        judge = simulated_answer(pool[n % len(pool)], _gold_batch(gold), random.Random(seed * 1000 + n))
        try:
            got = answer_queue(url, project, token, judge, deadline_s)
        except BaseException as e:  # noqa: BLE001 - reported once the threads are joined
            with lock:
                errors.append(e)
            return
        with lock:
            acks.extend(got)

    threads = [threading.Thread(target=work, args=(n, tok)) for n, tok in enumerate(tokens.values())]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"a simulated labeler failed: {errors[0]!r}") from errors[0]
    return acks


def evaluate_gold(policy: str, ref: Any, prompts: list[str], gold: Gold, max_new_tokens: int, seed: int) -> dict:
    """Gold score and KL to the round-0 policy: one sample per held-out prompt (evaluate.py)."""
    from rlhfkit.evaluate import sample_policy
    from rlhfkit.lm.models import load_policy
    from rlhfkit.stats import mean_ci

    seed_everything(seed)
    model, tok = load_policy(policy)
    model.eval()
    responses, kls = sample_policy(model, tok, prompts, max_new_tokens, ref=ref)
    g, g_ci = mean_ci(gold.batch(list(prompts), responses))
    k, k_ci = mean_ci(kls)
    return {"gold": g, "gold_ci": g_ci, "kl": k, "kl_ci": k_ci,
            "samples": [{"prompt": p, "response": y} for p, y in zip(prompts[:3], responses[:3])]}


def _labelers(store: Any, project: str, n: int) -> dict[str, str]:
    """`n` labeler accounts with API tokens (the tokens live only in this process)."""
    from rlhfkit.feedback.labelers import default_pool

    pool = default_pool()
    return {name: store.add_user(name, token=True)[1]
            for name in (f"{project}-{pool[i % len(pool)].name}-{i}" for i in range(n))}


def _answer_ids(store: Any, project: str) -> set[int]:
    return {a.id for _, answers in store.items_with_answers(project) for a in answers}


def _policy_step(cfg: RoundsConfig, rd: Path, policy: str, policy0: str, all_labels: Path, round_labels: Path,
                 common: dict[str, Any], rm_start: str | None = None) -> tuple[str, dict[str, Any] | None]:
    """rm -> ppo, or dpo: the next round's policy and the reward model's summary (None for dpo).
    The reward model starts from `rm_start` (the last round's) or, without one, the SFT backbone."""
    from rlhfkit.algos import dpo, ppo, reward_model
    from rlhfkit.train.online import KLConfig, RolloutConfig

    small = OptimConfig(checkpoint_every=0, log_every=10)
    if cfg.method == "dpo":
        s = dpo.run(dpo.DPOConfig(out=str(rd / "dpo"), policy=policy, data=str(round_labels), beta=cfg.dpo_beta,
                                  optim=replace(small, lr=cfg.dpo_lr, epochs=cfg.dpo_epochs), **common))
        return s["final"], None
    epochs = cfg.rm_warm_epochs if rm_start else cfg.rm_epochs
    rm = reward_model.run(reward_model.RMConfig(out=str(rd / "rm"), model=rm_start or policy0, data=str(all_labels),
                                                task=cfg.task, optim=replace(small, lr=cfg.rm_lr, epochs=epochs),
                                                **common))
    s = ppo.run(ppo.PPOConfig(
        out=str(rd / "ppo"), policy=policy, reward_model=rm["final"], kl=KLConfig(beta=cfg.beta),
        rollout=RolloutConfig(task=cfg.task, batch_prompts=cfg.rollout_prompts, max_new_tokens=cfg.max_new_tokens,
                              task_seed=cfg.seed),
        iterations=cfg.ppo_iterations, minibatch=16, lr=cfg.rl_lr, checkpoint_every=0, **common))
    return s["final"], {"final": rm["final"],
                        **{k: rm.get(k) for k in ("heldout_accuracy", "gold_accuracy", "ece", "n_heldout")}}


def run_rounds(cfg: RoundsConfig) -> dict:  # noqa: PLR0915 - the loop reads top to bottom
    from rlhfkit.feedback.formats import write_records
    from rlhfkit.labeling.client import LocalServer
    from rlhfkit.labeling.export import collect_records
    from rlhfkit.lm.models import load_policy
    from rlhfkit.pipeline import sft_policy
    from rlhfkit.report import plot_rounds, rounds_table

    t0 = time.time()
    if cfg.fast:
        cfg = fast_rounds(cfg)
    seed_everything(cfg.seed)
    task = load_task(cfg.task, cfg.seed)
    gold = gold_of(task)
    if gold is None:
        raise UserError(f"label rounds: task {task.name} has no gold scorer for the simulated labelers to share")
    out = Path(cfg.out or "runs/label-rounds")
    run_dir = RunDir.create(out, cfg)
    common = {"seed": cfg.seed, "log": cfg.log, "device": cfg.device}
    policy0 = cfg.policy or sft_policy(out, cfg.model, cfg.pretrain_docs, cfg.pretrain_epochs, cfg.sft_demos,
                                       cfg.resume, common)
    db = cfg.db or str(out / "labels.db")
    store = _open_store(db)
    if cfg.project in {p.name for p in store.projects()}:
        raise UserError(f"label rounds: project {cfg.project!r} already exists in {db}; the loop starts from an "
                        "empty project (give another --out, --set db=... or --set project=...)")
    store.create_project(cfg.project, cfg.kind)
    tokens = _labelers(store, cfg.project, cfg.labelers)
    eval_prompts = task_prompts(task, cfg.eval_prompts, "eval")
    ref, _ = load_policy(policy0)
    ref.eval()
    rows = [{"round": 0, "policy": policy0, **evaluate_gold(policy0, ref, eval_prompts, gold, cfg.max_new_tokens,
                                                             cfg.seed)}]
    log.info("label rounds: round 0 gold %.3f", rows[0]["gold"])
    acked: set[int] = set()
    policy, rm_start = policy0, None
    for r in range(1, cfg.rounds + 1):
        t_round, rd = time.time(), out / f"round-{r}"
        model, tok = load_policy(policy)
        items = refresh_items(store, cfg.project, model, tok, task, n_prompts=cfg.prompts_per_round, k=cfg.k,
                              round_=r, policy_name=policy, max_new_tokens=cfg.max_new_tokens)
        del model
        with LocalServer(db, log=out / "server.log") as server:  # a fresh server every round
            acks = label_round(server.url, cfg.project, tokens, gold, cfg.seed + r, cfg.label_deadline)
        round_acked = {a.answer_id for a in acks}
        acked |= round_acked
        stored = _answer_ids(store, cfg.project)
        records = collect_records(store, cfg.project)
        rd.mkdir(parents=True, exist_ok=True)
        write_records(rd / "labels_all.jsonl", records)
        write_records(rd / "labels_round.jsonl", [x for x in records if x.meta.get("round") == r])
        policy, rm = _policy_step(cfg, rd, policy, policy0, rd / "labels_all.jsonl", rd / "labels_round.jsonl",
                                  common, rm_start if cfg.rm_warm_start else None)
        rm_start = rm["final"] if rm else None
        row = {"round": r, "policy": policy, "items": len(items), "answers": len(round_acked),
               "acknowledged": len(acked), "stored": len(stored), "lost": len(acked - stored), "records": len(records),
               "reward_model": rm, **evaluate_gold(policy, ref, eval_prompts, gold, cfg.max_new_tokens, cfg.seed),
               "wall_s": time.time() - t_round}
        rows.append(row)
        log.info("label rounds: round %d gold %.3f (KL %.2f); %d answers acknowledged, %d stored, %d lost", r,
                 row["gold"], row["kl"], row["acknowledged"], row["stored"], row["lost"])
    stored = _answer_ids(store, cfg.project)
    store.close()
    golds = [row["gold"] for row in rows]
    summary = {"rounds": rows, "gold": golds, "rises_every_round": all(b > a for a, b in zip(golds, golds[1:])),
               "acknowledged": len(acked), "stored": len(stored), "lost": len(acked - stored),
               "method": cfg.method, "kind": cfg.kind, "db": db, "project": cfg.project, "wall_s": time.time() - t0}
    plot_rounds(rows, out / "gold_by_round.png")
    (out / "report.md").write_text(f"# Rounds of labels on the current policy ({cfg.method}, {cfg.kind})\n\n"
                                   + rounds_table(rows) + "\n\n![gold by round](gold_by_round.png)\n\n"
                                   f"Answers acknowledged by the server: {summary['acknowledged']}; stored: "
                                   f"{summary['stored']}; lost: {summary['lost']} (the server restarted every "
                                   "round).\n")
    run_dir.write_summary(summary)
    log.info("label rounds: gold by round %s; report in %s", ", ".join(f"{g:.3f}" for g in golds), out / "report.md")
    return summary
