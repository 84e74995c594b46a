"""`rlhfkit offline train-dt | train-cdt | eval`: the loop every offline method shares.

    build the method (model, sampler, loss, policy) from the dataset and the config
    resume from the newest checkpoint if asked
    for each step: sample a batch, loss, backward, clip, AdamW step, warmup schedule
        every eval_every steps: roll out at the main target (the learning curve)
        every checkpoint_every steps: save weights, optimizer, sampler and RNG state
    evaluate at the targets (and, for the CDT and BC-Safe, the cost thresholds); write the
    summary, the plots and report.md
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlhfkit import config as config_lib
from rlhfkit.errors import UserError
from rlhfkit.logging import MetricsLogger, get_logger, progress
from rlhfkit.offline import report
from rlhfkit.offline.dataset import OfflineDataset, load_mixture, normalized_cost
from rlhfkit.offline.evaluate import rollout
from rlhfkit.offline.method import METHODS, Method, OfflineConfig
from rlhfkit.offline.methods import builders
from rlhfkit.runtime import (
    RunDir,
    load_model_weights,
    load_trainer_state,
    save_checkpoint,
    seed_everything,
    write_json,
)

log = get_logger(__name__)


def fit(method: Method, cfg: OfflineConfig, run: RunDir, metrics: MetricsLogger,
        curve_point: Any = None) -> list[dict]:
    """Train `method.model` for cfg.steps; returns the learning curve (eval points)."""
    model = method.model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
    start, curve = 0, []
    ckpt = run.latest_checkpoint() if cfg.resume else None
    if ckpt is not None:
        load_model_weights(model, ckpt / "model")
        state = load_trainer_state(ckpt)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        method.sampler.load_state_dict(state["sampler"])
        start, curve = state["step"], state["curve"]
        log.info("resumed %s from %s (step %d)", method.name, ckpt, start)
    model.train()
    bar = progress(range(start, cfg.steps), total=cfg.steps, desc=f"offline {method.name}")
    bar.update(start)
    for step in bar:
        out = method.loss_fn(method.sampler.sample(cfg.batch_size))
        if not torch.isfinite(out.loss):
            raise UserError(f"{method.name}: the loss is {out.loss.item()} at step {step + 1}; "
                            f"lower --set lr (now {cfg.lr}) or check the dataset {cfg.data} for extreme values")
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        done = step + 1
        if done % 50 == 0 or done == cfg.steps:
            metrics.log({f"train/{k}": v for k, v in {**out.metrics, "loss": out.loss.item(),
                                                         "grad_norm": float(grad_norm),
                                                         "lr": sched.get_last_lr()[0]}.items()}, step=done)
        if curve_point is not None and cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps:
            model.eval()
            curve.append({"step": done, **curve_point(method)})
            metrics.log({f"eval/{k}": v for k, v in curve[-1].items() if k != "step"}, step=done)
            model.train()
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save_checkpoint(run, done, {"model": model},
                            {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                             "sampler": method.sampler.state_dict(), "curve": curve})
    model.eval()
    return curve


def default_targets(data: OfflineDataset, cfg: OfflineConfig) -> list[float]:
    """Five target returns spanning the mixture's episode returns, lowest to highest (the
    highest, the best episode in the data, is the one the score is reported at)."""
    if cfg.targets:
        return sorted(float(t) for t in cfg.targets)
    r = data.returns
    return np.linspace(r.min(), r.max(), 5).tolist()


def default_thresholds(data: OfflineDataset, cfg: OfflineConfig) -> list[float]:
    """Cost thresholds for the CDT: the 25th, 50th and 75th percentiles of the episode costs."""
    if cfg.thresholds:
        return sorted(float(t) for t in cfg.thresholds)
    qs = np.percentile(data.episode_costs, [25, 50, 75])
    return sorted({max(1.0, float(np.round(q))) for q in qs})


def env_factory(data: OfflineDataset):
    from rlhfkit.offline.envs import make_env

    info = data.info
    return lambda: make_env(info.env_id, cost=info.cost)


def evaluate_point(method: Method, data: OfflineDataset, episodes: int, seed: int, target_return: float,
                   target_cost: float | None) -> dict[str, float]:
    """Mean return, normalized score and cost of `episodes` rollouts at one target."""
    res = rollout(env_factory(data), method.policy(), episodes, target_return, target_cost, seed=seed)
    scores = data.info.references.score(res.returns)
    point = {"target_return": target_return, "return_mean": float(res.returns.mean()),
             "return_std": float(res.returns.std()), "score_mean": float(np.mean(scores)),
             "score_std": float(np.std(scores)), "cost_mean": float(res.costs.mean()),
             "length_mean": float(res.lengths.mean())}
    if target_cost is not None:
        point.update(threshold=target_cost, norm_cost_mean=float(np.mean(normalized_cost(res.costs, target_cost))))
    return point


def main_target(data: OfflineDataset) -> float:
    """The return the score is reported at: the best episode return in the training mixture,
    the top of the conditioning sweep. (Chen et al. 2021 condition on a return near the best in
    D4RL's data, 3600 on Hopper. Asking for much more than any episode holds puts the
    return-to-go out of distribution: on CartPole medium-replay, seed 0, a DT asked for 500
    collected 97, and asked for the data's best, 212, collected 196.)"""
    return float(data.returns.max())


def feasible_target(data: OfflineDataset, threshold: float) -> float:
    """The CDT's target return at a cost threshold: the best return among the episodes whose
    cost is within it (the data's reward-cost frontier at that budget), or the lowest return
    when none is. Liu et al. 2023 and OSRL pair each threshold with a target return of its
    own; this takes it from the data rather than by hand."""
    within = data.returns[data.episode_costs <= threshold]
    return float(within.max()) if len(within) else float(data.returns.min())


def evaluate_method(method: Method, data: OfflineDataset, cfg: OfflineConfig) -> dict[str, Any]:
    """Return-conditioned methods: the five targets (the conditioning curve) and the main target
    (the score); cost-aware ones: each threshold at the main target; BC: one point."""
    seed = 10_000 + 1000 * cfg.seed  # evaluation episodes never reuse the training seed's
    out: dict[str, Any] = {"main_target": main_target(data)}
    if method.uses_cost:
        thresholds = default_thresholds(data, cfg)
        pts = [evaluate_point(method, data, cfg.eval_episodes, seed, feasible_target(data, k), k)
               for k in progress(thresholds, desc="eval thresholds")]
        out["thresholds"] = pts
        out["norm_cost_max"] = max(p["norm_cost_mean"] for p in pts)
        out["score"] = min(p["score_mean"] for p in pts)
    elif method.conditioned:
        targets = default_targets(data, cfg)
        pts = [evaluate_point(method, data, cfg.eval_episodes, seed, t, None)
               for t in progress(targets, desc="eval targets")]
        out["targets"] = pts
        out["spearman"] = spearman([p["target_return"] for p in pts], [p["return_mean"] for p in pts])
        same = [p for p in pts if abs(p["target_return"] - out["main_target"]) < 1e-9]
        out["main"] = same[0] if same else evaluate_point(method, data, cfg.eval_episodes, seed,
                                                          out["main_target"], None)
        out["score"] = out["main"]["score_mean"]
    else:
        k = cfg.cost_threshold if method.name == "bc-safe" else None
        pt = evaluate_point(method, data, cfg.eval_episodes, seed, 0.0, k)
        out["point"] = pt
        out["score"] = pt["score_mean"]
    return out


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks (ties share their
    average rank); 0 when either side is constant."""

    def ranks(v: list[float]) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=np.float64)
        for value in np.unique(v):  # ties: the mean of their ranks
            r[v == value] = r[v == value].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def build(cfg: OfflineConfig) -> tuple[OfflineDataset, Method]:
    table = builders()
    if cfg.method not in table:
        raise UserError(f"--method {cfg.method!r}: use one of {', '.join(METHODS)}")
    data = load_mixture(cfg.data, cfg.mixture)
    return data, table[cfg.method](data, cfg)


def run_train(cfg: OfflineConfig) -> dict[str, Any]:
    """Train one method on one mixture, evaluate it, write the run directory."""
    seed_everything(cfg.seed)
    out = cfg.out or f"runs/offline-{cfg.method}-{Path(cfg.data).name}-{cfg.mixture}-s{cfg.seed}"
    cfg = dataclasses.replace(cfg, out=out)
    data, method = build(cfg)
    run = RunDir.create(out, cfg)
    t0 = time.perf_counter()
    target = main_target(data)
    main_cost = default_thresholds(data, cfg)[len(default_thresholds(data, cfg)) // 2] if method.uses_cost else None

    if main_cost is not None:
        target = feasible_target(data, main_cost)

    def point(m: Method) -> dict[str, float]:
        return evaluate_point(m, data, cfg.eval_episodes, 20_000 + cfg.seed, target, main_cost)

    with MetricsLogger(run.path, cfg.log, resume=cfg.resume) as metrics:
        curve = fit(method, cfg, run, metrics, point)
        train_s = time.perf_counter() - t0
        result = evaluate_method(method, data, cfg)
    save_checkpoint(run, cfg.steps, {"model": method.model}, {"curve": curve}, keep=1)
    write_json(run.path / "method.json", {"method": method.name, **method.saved})
    summary = {"method": method.name, "env": data.info.env_id, "mixture": cfg.mixture, "seed": cfg.seed,
               "steps": cfg.steps, "train_s": train_s, "eval_s": time.perf_counter() - t0 - train_s,
               "references": dataclasses.asdict(data.info.references), "curve": curve, **result}
    run.write_summary(summary)
    report.write(run.path, summary)
    log.info("%s on %s/%s: normalized score %.1f; summary in %s", method.name, data.info.env_id,
             cfg.mixture, summary["score"], run.path / "summary.json")
    return summary


def run_eval(cfg: OfflineConfig) -> dict[str, Any]:
    """Evaluate a trained run again (other targets, thresholds or more episodes): `--out` is
    the trained run's folder; its config is read and the given flags override it."""
    if not cfg.out:
        raise UserError("offline eval: pass the trained run's folder with --out")
    run = RunDir(Path(cfg.out))
    saved = run.path / "config.yaml"
    if not saved.exists():
        raise UserError(f"{saved}: not found; --out must be a folder written by `rlhfkit offline train-dt`")
    trained = config_lib.resolve(OfflineConfig, saved)
    cfg = dataclasses.replace(trained, targets=cfg.targets or trained.targets, seed=cfg.seed,
                              thresholds=cfg.thresholds or trained.thresholds, eval_episodes=cfg.eval_episodes)
    ckpt = run.latest_checkpoint()
    if ckpt is None:
        raise UserError(f"{run.path}: no trained model found (checkpoints/step-*/); train it first")
    data, method = build(cfg)
    load_model_weights(method.model, ckpt / "model")
    method.model.eval()
    result = evaluate_method(method, data, cfg)
    write_json(run.path / "eval.json", result)
    report.write(run.path, {**json_summary(run.path), **result})
    return result


def json_summary(folder: Path) -> dict[str, Any]:
    import json

    path = folder / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}
