"""Preference RL on control tasks: rlhfkit.control vs the `imitation` library's
PreferenceComparisons (synthetic gatherer), same env steps, same comparisons, same agent
(stable-baselines3 with the same generic defaults), same evaluation.

`imitation` pins older gymnasium / stable-baselines3, so it runs in its own virtual
environment (never a dependency of rlhfkit):

    python -m venv --system-site-packages /tmp/imitation-venv
    /tmp/imitation-venv/bin/pip install imitation==1.0.1
    OMP_NUM_THREADS=1 python benchmarks/control_vs_imitation.py --env CartPole-v1 \
        --comparisons 100 --seeds 0 1 2 --imitation-python /tmp/imitation-venv/bin/python

Prints, per side and budget, the median [min, max] over seeds of the final true return
(20 deterministic episodes) and the median wall time, and writes them as JSON (--out).

Our side can be read from stored `rlhfkit control train` summaries instead of rerun
(`--ours-from 'benchmarks/results/control/cartpole-random-s{seed}.json'`): those are the
same default settings, seeds and budget; rows loaded this way say so (`"source"`). The
peer is then given the env steps recorded there (agent steps plus our random-policy
steps), so both sides see the same number of environment steps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


def load_ours(pattern: str, env_id: str, comparisons: int, seed: int) -> dict:
    """Our side from a stored summary.json; refuses one made with other settings."""
    path = Path(pattern.format(seed=seed))
    if not path.exists():
        raise SystemExit(f"--ours-from: {path} does not exist")
    d = json.loads(path.read_text())
    if (d["env"], d["comparisons"], d["seed"]) != (env_id, comparisons, seed):
        raise SystemExit(f"--ours-from: {path} is {d['env']} / {d['comparisons']} comparisons / seed {d['seed']}, "
                         f"not {env_id} / {comparisons} / {seed}")
    return {"return": d["true_return_mean"], "wall_s": d["wall_s"], "env_steps": d["env_steps"],
            "query": d["query"], "source": str(path)}


def run_ours(env_id: str, comparisons: int, seed: int, timesteps: int) -> dict:
    from rlhfkit.control.labelers import SyntheticLabeler
    from rlhfkit.control.loop import ControlConfig, train_preference_rl

    cfg = ControlConfig(env=env_id, comparisons=comparisons, timesteps=timesteps, seed=seed, baseline=False)
    res = train_preference_rl(cfg, SyntheticLabeler(seed=seed + 1))
    return {"return": float(np.mean(res["final_returns"])), "wall_s": res["wall_s"], "env_steps": res["env_steps"]}


def run_imitation(env_id: str, comparisons: int, seed: int, timesteps: int, fragment_length: int) -> dict:
    """Runs inside the imitation venv. The agent gets rlhfkit's generic SB3 defaults
    (PPO for Discrete, SAC for Box actions); the rest is imitation's documented setup.
    imitation cuts fragments inside episodes only, so the fragment must be shorter than
    the random policy's CartPole episodes (about 20 steps) or it refuses to start."""
    import gymnasium as gym
    import torch
    from imitation.algorithms import preference_comparisons as pc
    from imitation.rewards.reward_nets import BasicRewardNet
    from imitation.util.networks import RunningNorm
    from imitation.util.util import make_vec_env
    from stable_baselines3 import PPO, SAC

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    venv = make_vec_env(env_id, rng=rng, n_envs=1)
    discrete = isinstance(venv.action_space, gym.spaces.Discrete)
    if discrete:
        agent = PPO("MlpPolicy", venv, seed=seed, n_steps=1024, batch_size=64, n_epochs=10, learning_rate=3e-4,
                    gamma=0.99, gae_lambda=0.95, ent_coef=0.0, device="cpu")
    else:
        agent = SAC("MlpPolicy", venv, seed=seed, learning_rate=3e-4, buffer_size=300_000, batch_size=256,
                    gamma=0.99, learning_starts=1000, policy_kwargs={"net_arch": [64, 64]}, device="cpu")
    reward_net = BasicRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
    model = pc.PreferenceModel(reward_net)
    trainer = pc.BasicRewardTrainer(preference_model=model, loss=pc.CrossEntropyRewardLoss(), epochs=3, rng=rng)
    gen = pc.AgentTrainer(algorithm=agent, reward_fn=reward_net, venv=venv, exploration_frac=0.05, rng=rng)
    algo = pc.PreferenceComparisons(
        gen, reward_net, num_iterations=10, fragmenter=pc.RandomFragmenter(warning_threshold=0, rng=rng),
        preference_gatherer=pc.SyntheticGatherer(rng=rng), reward_trainer=trainer, fragment_length=fragment_length,
        transition_oversampling=1, initial_comparison_frac=0.1, allow_variable_horizon=True,
        initial_epoch_multiplier=4, query_schedule="hyperbolic")
    t0 = time.time()
    algo.train(total_timesteps=timesteps, total_comparisons=comparisons)
    wall = time.time() - t0
    # rlhfkit's evaluation (the venv sees rlhfkit through --system-site-packages)
    from rlhfkit.control.agent import evaluate

    returns = evaluate(agent, gym.make(env_id), 20, seed=20_000 + seed * 100)
    return {"return": float(np.mean(returns)), "wall_s": wall, "env_steps": timesteps}


def default_timesteps(env_id: str) -> int:
    import gymnasium as gym

    from rlhfkit.control.agent import DEFAULT_TIMESTEPS

    discrete = isinstance(gym.make(env_id).action_space, gym.spaces.Discrete)
    return DEFAULT_TIMESTEPS["ppo" if discrete else "sac"]


def summarize(rows: list[dict]) -> list[str]:
    lines = []
    keys = sorted({(r["side"], r["comparisons"]) for r in rows})
    for side, n in keys:
        sel = [r for r in rows if r["side"] == side and r["comparisons"] == n]
        ret = np.asarray([r["return"] for r in sel])
        wall = np.median([r["wall_s"] for r in sel])
        lines.append(f"{side:10s} {n:5d} comparisons: true return {np.median(ret):7.1f} "
                     f"[{ret.min():.1f}, {ret.max():.1f}] over {len(sel)} seeds, median wall {wall:.0f}s")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="CartPole-v1")
    ap.add_argument("--comparisons", type=int, nargs="+", default=[100])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--timesteps", type=int, default=0, help="agent env steps (0: rlhfkit's default)")
    ap.add_argument("--sides", nargs="+", default=["rlhfkit", "imitation"], choices=["rlhfkit", "imitation"])
    ap.add_argument("--imitation-fragment-length", type=int, default=10)
    ap.add_argument("--imitation-python", default="/tmp/imitation-venv/bin/python")
    ap.add_argument("--ours-from", default=None,
                    help="read our side from stored summaries, e.g. 'benchmarks/results/control/cartpole-random-s{seed}.json'")
    ap.add_argument("--out", default=None, help="JSON rows (default benchmarks/results/control/vs-imitation-ENV.json)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:  # one imitation run, in the imitation venv
        print(json.dumps(run_imitation(args.env, args.comparisons[0], args.seeds[0], args.timesteps,
                                         args.imitation_fragment_length)))
        return
    steps = args.timesteps or default_timesteps(args.env)
    out_path = Path(args.out or f"benchmarks/results/control/vs-imitation-{args.env}.json")
    rows = []
    for n in args.comparisons:
        for seed in args.seeds:  # in sequence: the machine is small and shared
            peer_steps = steps
            for side in args.sides:
                if side == "rlhfkit":
                    if args.ours_from:
                        r = load_ours(args.ours_from, args.env, n, seed)
                        print(f"rlhfkit side, seed {seed}: loaded from {r['source']} (not rerun)", flush=True)
                        peer_steps = int(r["env_steps"])
                    else:
                        r = run_ours(args.env, n, seed, steps)
                else:
                    r = run_peer(args, n, seed, peer_steps)
                rows.append({"side": side, "env": args.env, "comparisons": n, "seed": seed, **r})
                print(json.dumps(rows[-1]), flush=True)
                out_path.parent.mkdir(parents=True, exist_ok=True)
                out_path.write_text(json.dumps(rows, indent=2) + "\n")  # after every run: partial results survive
    print("\n".join(summarize(rows)))


def run_peer(args: argparse.Namespace, comparisons: int, seed: int, steps: int) -> dict:
    """One imitation run in its own venv (a subprocess)."""
    cmd = [args.imitation_python, str(HERE), "--worker", "--env", args.env, "--comparisons", str(comparisons),
           "--seeds", str(seed), "--timesteps", str(steps),
           "--imitation-fragment-length", str(args.imitation_fragment_length)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"imitation run failed (seed {seed}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
