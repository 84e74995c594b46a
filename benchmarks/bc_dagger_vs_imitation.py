"""BC and DAgger, rlhfkit vs the `imitation` library, on the same expert, demonstrations and budgets.

    python benchmarks/bc_dagger_vs_imitation.py                       # CartPole-v1, 3 seeds
    python benchmarks/bc_dagger_vs_imitation.py --envs CartPole-v1 Acrobot-v1 --seeds 0 1 2 3 4
    python benchmarks/bc_dagger_vs_imitation.py --seeds 0 1 2 3 4 5 6 7 8 9 --dagger-budget 0  # BC only

The expert is the cached SB3 PPO policy (`rlhfkit.imitation.experts.ppo_expert`, trained on the
true reward on first use). Both sides clone the same `--bc-demos` expert transitions (the first
ones of the expert's episodes, saved to an .npz the peer reads) and DAgger gets the same budget of
expert-labelled transitions (`--dagger-budget`). Every policy is scored on the same reset seeds.

`imitation` pins older gymnasium / stable-baselines3, so it lives in its own virtual env:

    python -m venv --system-site-packages /tmp/imitation-venv
    /tmp/imitation-venv/bin/pip install imitation==1.0.1

and this file runs itself there with `--as-peer` (that mode imports only imitation and SB3).
Peer settings: library defaults, except BC's batch size (min(32, N): its loader drops incomplete
batches, so 25 transitions would give no batch at all) and BC's length (as many gradient steps as
ours). Figures print as median [min, max] over seeds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EVAL_SEED = 1_000_000
SKIPPED = {"dagger": [float("nan")], "dagger_labels": 0, "dagger_time": 0.0}  # --dagger-budget 0: BC only


def eval_seeds(seed: int, episodes: int) -> list[int]:
    return [EVAL_SEED + 1000 * seed + i for i in range(episodes)]


# ---------------------------------------------------------------- the peer (runs inside its venv)

def run_peer(args: argparse.Namespace) -> None:
    if "float_" not in np.__dict__:  # gymnasium 0.29's Acrobot still calls np.float_, gone in NumPy 2
        np.float_ = np.float64
    import gymnasium as gym
    import torch
    from imitation.algorithms import bc
    from imitation.algorithms.dagger import SimpleDAggerTrainer
    from imitation.data.types import Transitions
    from imitation.util.util import make_vec_env
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    venv = make_vec_env(args.env, rng=rng, n_envs=1)
    data = np.load(args.demos)
    obs, acts = data["obs"], data["actions"]
    trans = Transitions(obs=obs, acts=acts, infos=np.array([{}] * len(acts)), next_obs=np.zeros_like(obs),
                        dones=np.zeros(len(acts), dtype=bool))

    def score(policy) -> list[float]:
        env = gym.make(args.env)
        out = []
        for s in eval_seeds(args.seed, args.episodes):
            o, _ = env.reset(seed=s)
            ret, done = 0.0, False
            while not done:
                a, _ = policy.predict(o, deterministic=True)
                o, r, term, trunc, _ = env.step(int(a))
                ret, done = ret + float(r), term or trunc
            out.append(ret)
        return out

    t0 = time.time()
    learner = bc.BC(observation_space=venv.observation_space, action_space=venv.action_space,
                    demonstrations=trans, rng=rng, batch_size=min(32, len(acts)), device="cpu")
    learner.train(n_batches=args.bc_steps, progress_bar=False)
    bc_time = time.time() - t0
    if args.dagger_budget <= 0:
        print(json.dumps({"bc": score(learner.policy), "bc_time": bc_time, **SKIPPED}))
        return
    custom = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}
    expert = PPO.load(args.expert_zip, device="cpu", custom_objects=custom).policy
    # the zip was pickled under a newer gymnasium: same env, so adopt this venv's (equal) spaces
    expert.observation_space, expert.action_space = venv.observation_space, venv.action_space
    t0 = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        dag_bc = bc.BC(observation_space=venv.observation_space, action_space=venv.action_space, rng=rng,
                       device="cpu")
        trainer = SimpleDAggerTrainer(venv=venv, scratch_dir=scratch, expert_policy=expert, bc_trainer=dag_bc,
                                      rng=rng)
        trainer.train(total_timesteps=args.dagger_budget, bc_train_kwargs={"progress_bar": False})
        labelled = int(sum(len(t) for t in trainer._all_demos))
    dagger_time = time.time() - t0

    print(json.dumps({"bc": score(learner.policy), "bc_time": bc_time, "dagger": score(trainer.policy),
                      "dagger_labels": labelled, "dagger_time": dagger_time}))


# ---------------------------------------------------------------- rlhfkit (and the driver)

def fmt(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    return f"{np.median(v):7.1f} [{v.min():7.1f}, {v.max():7.1f}]"


def run_ours(env_id: str, seed: int, expert, args: argparse.Namespace, demo_path: Path) -> dict:
    from rlhfkit.imitation.bc import BCConfig, collect_demos, evaluate_policy, make_env, train_bc
    from rlhfkit.imitation.dagger import DAggerConfig, dagger

    n_actions = int(make_env(env_id).action_space.n)
    obs, acts = collect_demos(expert, env_id, args.bc_demos, seed=1000 * seed)
    np.savez(demo_path, obs=obs, actions=acts)

    def score(policy) -> list[float]:
        return [float(evaluate_policy(policy, env_id, 1, seed=s)[0]) for s in eval_seeds(seed, args.episodes)]

    t0 = time.time()
    policy, _ = train_bc(obs, acts, n_actions, BCConfig(), seed=seed)
    bc_time = time.time() - t0
    if args.dagger_budget <= 0:
        return {"bc": score(policy), "bc_time": bc_time, **SKIPPED}
    t0 = time.time()
    result = dagger(expert, env_id, DAggerConfig(budget=args.dagger_budget, eval_episodes=0), seed=seed)
    dagger_time = time.time() - t0
    return {"bc": score(policy), "bc_time": bc_time, "dagger": score(result.policy),
            "dagger_labels": result.expert_transitions, "dagger_time": dagger_time}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", nargs="+", default=["CartPole-v1"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--bc-demos", type=int, default=25)
    ap.add_argument("--dagger-budget", type=int, default=1000)
    ap.add_argument("--episodes", type=int, default=20, help="evaluation episodes per policy")
    ap.add_argument("--peer-python", default="/tmp/imitation-venv/bin/python")
    ap.add_argument("--no-peer", action="store_true")
    # --as-peer mode (internal)
    ap.add_argument("--as-peer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--env", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--demos", help=argparse.SUPPRESS)
    ap.add_argument("--expert-zip", help=argparse.SUPPRESS)
    ap.add_argument("--bc-steps", type=int, default=600, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.as_peer:
        run_peer(args)
        return
    drive(args)


def drive(args: argparse.Namespace) -> None:
    import torch

    from rlhfkit.imitation.bc import BCConfig, evaluate_policy
    from rlhfkit.imitation.experts import ppo_expert

    torch.set_num_threads(1)
    peer_ok = not args.no_peer and Path(args.peer_python).exists()
    for env_id in args.envs:
        expert = ppo_expert(env_id)
        expert_ret = evaluate_policy(expert, env_id, args.episodes, seed=EVAL_SEED)
        rows: dict[str, dict[str, list]] = {"ours": {}, "imitation": {}}
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                demo_path = Path(tmp) / "demos.npz"
                results = {"ours": run_ours(env_id, seed, expert, args, demo_path)}
                if peer_ok:
                    cmd = [args.peer_python, __file__, "--as-peer", "--env", env_id, "--seed", str(seed),
                           "--demos", str(demo_path), "--expert-zip", str(expert.path), "--episodes",
                           str(args.episodes), "--dagger-budget", str(args.dagger_budget),
                           "--bc-steps", str(BCConfig().steps)]
                    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
                    if proc.returncode != 0:
                        sys.stderr.write(proc.stderr[-3000:])
                        raise SystemExit(f"the imitation peer failed on {env_id} seed {seed}")
                    results["imitation"] = json.loads(proc.stdout.strip().splitlines()[-1])
            for side, res in results.items():
                for key, value in res.items():
                    rows[side].setdefault(key, []).append(float(np.mean(value)) if isinstance(value, list) else value)
            sys.stderr.write(f"{env_id} seed {seed}: " + json.dumps(
                {s: {k: round(float(np.mean(v)), 1) for k, v in r.items()} for s, r in results.items()}) + "\n")
        print(f"\n{env_id}: expert (SB3 PPO) return {np.mean(expert_ret):.1f}; seeds {args.seeds}; "
              f"{args.episodes} eval episodes each; median [min, max] over seeds of the mean return")
        print(f"{'':10s} {'BC from ' + str(args.bc_demos):>27s}  {'DAgger, <= ' + str(args.dagger_budget) + ' labels':>27s}"
              f"  {'labels used':>12s}  {'s/run BC':>8s}  {'s/run DAgger':>12s}")
        for side, r in rows.items():
            if r:
                print(f"{side:10s} {fmt(r['bc']):>27s}  {fmt(r['dagger']):>27s}  {int(max(r['dagger_labels'])):>12d}"
                      f"  {np.mean(r['bc_time']):8.1f}  {np.mean(r['dagger_time']):12.1f}")


if __name__ == "__main__":
    main()
