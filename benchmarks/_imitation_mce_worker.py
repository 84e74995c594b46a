"""Runs `imitation`'s MCE IRL on MDPs and demonstrations saved by irl_vs_imitation.py.

Runs inside a separate virtual environment that has `imitation` (its pins clash with ours), so it
imports neither rlhfkit nor anything outside numpy/torch/imitation/seals. Input: an .npz per task
with P (S, A, S), features (S, F), start (S,), horizon T, gamma, and demos as states (N, T) and
actions (N, T). Output: JSON with the learned state reward, iterations and seconds.

    /tmp/imitation-venv/bin/python benchmarks/_imitation_mce_worker.py task.npz out.json
"""

import json
import sys
import time

import numpy as np
import torch as th
from imitation.algorithms import mce_irl
from imitation.data import types
from imitation.rewards import reward_nets
from seals import base_envs


def main(src: str, dst: str) -> None:
    z = np.load(src)
    T = int(z["horizon"])
    # imitation's occupancy covers t = 0..horizon (horizon + 1 states) and its trajectories hold
    # one more observation than actions: our T visited states are its horizon T - 1.
    env = base_envs.TabularModelPOMDP(transition_matrix=z["P"], observation_matrix=z["features"],
                                      reward_matrix=np.zeros(z["P"].shape[0]), horizon=T - 1,
                                      initial_state_dist=z["start"])
    trajs = [types.Trajectory(obs=s.astype(np.int64), acts=a[:-1].astype(np.int64), infos=None, terminal=True)
             for s, a in zip(z["states"], z["actions"])]
    rng = np.random.default_rng(int(z["seed"]))
    th.manual_seed(int(z["seed"]))
    net = reward_nets.BasicRewardNet(env.observation_space, env.action_space, hid_sizes=[],
                                     use_action=False, use_done=False, use_next_state=False)
    algo = mce_irl.MCEIRL(trajs, env, net, rng=rng, discount=float(z["gamma"]), log_interval=None)
    calls = [0]
    step = algo._train_step

    def counted(obs_mat):
        calls[0] += 1
        return step(obs_mat)

    algo._train_step = counted
    t0 = time.perf_counter()
    algo.train(max_iter=1000)
    seconds = time.perf_counter() - t0
    with th.no_grad():
        obs = th.as_tensor(env.observation_matrix, dtype=net.dtype)
        reward = net(obs, None, None, None).squeeze(-1).numpy().astype(float)
    with open(dst, "w") as fh:
        json.dump({"reward": reward.tolist(), "iterations": calls[0], "seconds": seconds}, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
