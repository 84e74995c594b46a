"""Behaviour cloning: tabular MLE by hand, neural BC learns CartPole from a scripted expert."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlhfkit.imitation.bc import (BCConfig, DemoError, NeuralPolicy, bc_loss, bc_tabular, collect_demos,
                                  evaluate_policy, rollout, train_bc)
from rlhfkit.imitation.experts import LinearController, make_expert, ExpertError

FAST = BCConfig(hidden=[32, 32], ensemble=3, steps=300)


def test_tabular_bc_matches_hand_counts():
    # state 0: actions 1,1,0 -> pi = (1/3, 2/3); state 1: action 2 once; state 2 unseen -> uniform
    pi = bc_tabular(np.array([0, 0, 0, 1]), np.array([1, 1, 0, 2]), n_states=3, n_actions=3)
    np.testing.assert_allclose(pi.probs[0], [1 / 3, 2 / 3, 0.0])
    np.testing.assert_allclose(pi.probs[1], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(pi.probs[2], [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_array_equal(pi.act(np.array([0, 1])), [1, 2])


def test_tabular_bc_laplace_smoothing():
    pi = bc_tabular(np.array([0, 0]), np.array([1, 1]), n_states=1, n_actions=2, alpha=1.0)
    np.testing.assert_allclose(pi.probs[0], [1 / 4, 3 / 4])  # (0+1)/(2+2), (2+1)/(2+2)


def test_tabular_bc_rejects_bad_input():
    with pytest.raises(DemoError, match="outside"):
        bc_tabular(np.array([0, 5]), np.array([0, 0]), n_states=3, n_actions=2)
    with pytest.raises(DemoError, match="differ"):
        bc_tabular(np.array([0, 1]), np.array([0]), n_states=3, n_actions=2)


def test_bc_loss_is_member_summed_nll():
    torch.manual_seed(0)
    from rlhfkit.imitation.bc import EnsembleMLP

    net = EnsembleMLP(3, 2, [4], members=2)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    loss, metrics = bc_loss(net, x, y)
    logits = net.member_logits(x)  # (M, B, A)
    naive = sum(torch.nn.functional.cross_entropy(logits[m], y) for m in range(2))
    assert torch.allclose(loss, naive, atol=1e-6)
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_ensemble_averages_member_probabilities():
    torch.manual_seed(0)
    from rlhfkit.imitation.bc import EnsembleMLP

    net = EnsembleMLP(3, 2, [4], members=3)
    x = torch.randn(4, 3)
    expected = torch.softmax(net.member_logits(x), -1).mean(0).log()
    assert torch.allclose(net(x), expected, atol=1e-6)


def test_collect_demos_counts_transitions_across_episodes():
    expert = LinearController()
    obs, act = collect_demos(expert, "CartPole-v1", 600, seed=0)  # more than one 500-step episode
    assert obs.shape == (600, 4) and act.shape == (600,)
    np.testing.assert_array_equal(act, expert.act(obs))
    with pytest.raises(DemoError):
        collect_demos(expert, "CartPole-v1", 0, seed=0)


def test_scripted_expert_balances_cartpole():
    assert evaluate_policy(LinearController(), "CartPole-v1", 3, seed=0).min() == 500.0
    with pytest.raises(ExpertError):
        make_expert("linear", "Acrobot-v1")


def test_train_bc_rejects_bad_demos():
    with pytest.raises(DemoError, match="outside"):
        train_bc(np.zeros((3, 4)), np.array([0, 1, 2]), n_actions=2, cfg=FAST)
    with pytest.raises(DemoError, match=r"\(N,\)"):
        train_bc(np.zeros((3, 4)), np.array([0, 1]), n_actions=2, cfg=FAST)
    with pytest.raises(DemoError, match="NaN"):
        train_bc(np.full((2, 4), np.nan), np.array([0, 1]), n_actions=2, cfg=FAST)


def test_same_seed_same_policy_and_save_load_round_trip(tmp_path):
    obs, act = collect_demos(LinearController(), "CartPole-v1", 50, seed=1)
    p1, m1 = train_bc(obs, act, 2, FAST, seed=3)
    p2, m2 = train_bc(obs, act, 2, FAST, seed=3)
    assert m1 == m2
    np.testing.assert_array_equal(p1.action_logprobs(obs), p2.action_logprobs(obs))
    p1.save(tmp_path / "policy.pt")
    p3 = NeuralPolicy.load(tmp_path / "policy.pt")
    np.testing.assert_array_equal(p1.action_logprobs(obs), p3.action_logprobs(obs))


def test_bc_learns_cartpole_from_scripted_expert():
    """400 transitions drawn from 2 expert episodes: the clone balances the pole."""
    expert = LinearController()
    obs, act = collect_demos(expert, "CartPole-v1", 1000, seed=0)
    idx = np.random.default_rng(0).choice(len(act), 400, replace=False)
    policy, fit = train_bc(obs[idx], act[idx], 2, FAST, seed=0)
    assert fit["accuracy"] > 0.9
    untrained = rollout("CartPole-v1", lambda_policy(0), seed=5).ret  # always-left falls fast
    assert untrained < 50
    assert evaluate_policy(policy, "CartPole-v1", 3, seed=123).mean() >= 475


def lambda_policy(action: int):
    class _Const:
        def act(self, obs):
            return np.full(len(np.atleast_2d(obs)), action)

    return _Const()


def test_gaussian_prior_penalty_by_hand():
    from rlhfkit.imitation.bc import EnsembleMLP, gaussian_prior_penalty

    net = EnsembleMLP(2, 2, [3], members=1)
    with torch.no_grad():
        for w in net.weights:
            w.fill_(0.5)
    # weights: 2*3 + 3*2 = 12 entries of 0.25 -> ||W||^2 = 3; precision 2, n 4 -> 2/(2*4) * 3
    assert gaussian_prior_penalty(net, 2.0, 4).item() == pytest.approx(0.75)


def test_group_soft_threshold_zeroes_small_groups():
    from rlhfkit.imitation.bc import _group_soft_threshold

    w = torch.tensor([[[3.0, 4.0], [0.3, 0.4]]])  # (M=1, D=2, H=2): group norms 5 and 0.5
    _group_soft_threshold(w, 1.0)
    assert torch.allclose(w, torch.tensor([[[2.4, 3.2], [0.0, 0.0]]]))
