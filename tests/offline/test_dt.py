"""The Decision Transformer: tokens, timesteps, the causal mask, loss masks, and that it learns
and follows the return it is told, on a trivial environment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from count_env import CountEnv, count_dataset  # noqa: E402 (tests/offline on sys.path)

from rlhfkit.offline.dt import DecisionTransformer, DTConfig
from rlhfkit.offline.evaluate import DTPolicy, rollout
from rlhfkit.offline.method import OfflineConfig
from rlhfkit.offline.methods import build_cdt, build_dt, relabel_views
from rlhfkit.offline.sequence import Normalizer, WindowSampler
from rlhfkit.ops.actions import action_cross_entropy, action_mse, gaussian_nll


def _model(use_cost: bool = False, discrete: bool = False, **kw) -> DecisionTransformer:
    torch.manual_seed(0)
    head = "categorical" if discrete else kw.pop("head", "deterministic")
    cfg = DTConfig(state_dim=3, act_dim=2, discrete=discrete, head=head, use_cost=use_cost, context=5,
                   max_timestep=50, hidden=16, layers=2, heads=2, dropout=0.0, **kw)
    return DecisionTransformer(cfg).eval()


def _inputs(b: int = 2, k: int = 5, discrete: bool = False, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, k, 3, generator=g)
    a = torch.randint(0, 2, (b, k), generator=g) if discrete else torch.randn(b, k, 2, generator=g)
    r, c = torch.randn(b, k, generator=g), torch.randn(b, k, generator=g)
    t = torch.arange(3, 3 + k).expand(b, k)
    return s, a, r, c, t


def test_tokens_interleave_return_state_action_with_the_step_timestep():
    m = _model()
    s, a, r, c, t = _inputs()
    x = m.tokens(s, a, r, None, t)  # (B, 3K, h)
    assert x.shape == (2, 15, 16)
    time = m.embed_time(t)
    # step j's tokens sit at 3j, 3j+1, 3j+2 and all carry timestep t_j's embedding
    for j in range(5):
        assert torch.allclose(x[:, 3 * j], m.embed_return(r[:, j:j + 1]) + time[:, j])
        assert torch.allclose(x[:, 3 * j + 1], m.embed_state(s[:, j]) + time[:, j])
        assert torch.allclose(x[:, 3 * j + 2], m.embed_action(a[:, j]) + time[:, j])


def test_cdt_tokens_put_cost_to_go_after_return():
    m = _model(use_cost=True, head="gaussian")
    s, a, r, c, t = _inputs()
    x = m.tokens(s, a, r, c, t)
    assert x.shape == (2, 20, 16)
    assert torch.allclose(x[:, 4 * 2 + 1], m.embed_cost(c[:, 2:3]) + m.embed_time(t)[:, 2])


def test_timestep_changes_the_prediction_and_is_clamped_past_the_table():
    m = _model()
    s, a, r, c, t = _inputs()
    base = m(s, a, r, None, t).head
    assert not torch.allclose(base, m(s, a, r, None, t + 1).head)
    far = m(s, a, r, None, t + 1000).head
    assert torch.allclose(far, m(s, a, r, None, torch.full_like(t, 50)).head)


@pytest.mark.parametrize("use_cost", [False, True])
def test_an_action_never_sees_its_own_or_later_actions(use_cost):
    m = _model(use_cost=use_cost, head="gaussian" if use_cost else "deterministic")
    s, a, r, c, t = _inputs()
    base = m(s, a, r, c if use_cost else None, t).head
    for j in range(5):
        a2 = a.clone()
        a2[:, j:] = torch.randn_like(a2[:, j:]) * 5  # change a_j and everything after it
        out = m(s, a2, r, c if use_cost else None, t).head
        assert torch.allclose(out[:, : j + 1], base[:, : j + 1], atol=1e-6), f"a_{j} leaked into its own prediction"
        if j + 1 < 5:
            assert not torch.allclose(out[:, j + 1:], base[:, j + 1:]), "later steps should see a_j"
    # the state and return of step j are seen by step j's prediction
    s2 = s.clone()
    s2[:, 2] += 1.0
    out = m(s2, a, r, c if use_cost else None, t).head
    assert torch.allclose(out[:, :2], base[:, :2], atol=1e-6) and not torch.allclose(out[:, 2], base[:, 2])


def test_action_losses_by_hand():
    mean = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])  # (1, 2, 2)
    target = torch.tensor([[[0.0, 0.0], [9.0, 9.0]]])
    mask = torch.tensor([[1.0, 0.0]])  # the second step is padding: ignored
    assert action_mse(mean, target, mask).loss.item() == pytest.approx(0.5)
    log_std = torch.zeros_like(mean)
    out = gaussian_nll(mean, target, mask, log_std=log_std, entropy_coef=0.1)
    nll = 0.5 * 1.0 + np.log(2 * np.pi)  # sum over 2 dims of 0.5 d^2 + 0.5 log 2 pi
    ent = 2 * (0.5 + 0.5 * np.log(2 * np.pi))
    assert out.loss.item() == pytest.approx(nll - 0.1 * ent, rel=1e-5)
    logits = torch.tensor([[[0.0, np.log(3.0)], [5.0, -5.0]]])
    ce = action_cross_entropy(logits, torch.tensor([[1, 1]]), mask)
    assert ce.loss.item() == pytest.approx(-np.log(0.75), rel=1e-5)
    with pytest.raises(ValueError, match="no real step"):
        action_mse(mean, target, torch.zeros_like(mask))


def _train(method, steps: int, bs: int = 32, lr: float = 1e-3) -> list[float]:
    opt = torch.optim.AdamW(method.model.parameters(), lr=lr)
    losses = []
    method.model.train()
    for _ in range(steps):
        out = method.loss_fn(method.sampler.sample(bs))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    method.model.eval()
    return losses


def _cfg(**kw) -> OfflineConfig:
    base = dict(context=10, hidden=32, layers=2, heads=1, dropout=0.0, seed=0)
    return OfflineConfig(**{**base, **kw})


def test_sampler_windows_right_pad_and_carry_return_to_go():
    data = count_dataset(5)
    s = WindowSampler(data, 4, Normalizer.fit(data), seed=1)
    b = s.sample(64)
    assert b.states.shape == (64, 4, 2) and b.actions.shape == (64, 4)
    lengths = b.mask.sum(1)
    assert ((b.mask[:, 1:] <= b.mask[:, :-1]).all()), "padding is on the right"
    assert (b.timesteps[:, 0] + lengths == torch.clamp(b.timesteps[:, 0] + 4, max=10)).all()
    # return-to-go drops by each step's reward (here the action) within the window
    real = b.mask[:, 1:] > 0
    step_drop = (b.returns_to_go[:, :-1] - b.returns_to_go[:, 1:]) * s.norm.return_scale
    assert torch.allclose(step_drop[real], b.actions[:, :-1][real].float(), atol=1e-5)
    again = WindowSampler(data, 4, Normalizer.fit(data), seed=1).sample(64)
    assert torch.equal(again.actions, b.actions)


@pytest.mark.slow
def test_dt_loss_falls_and_dt_follows_the_return_it_is_told():
    torch.manual_seed(0)
    data = count_dataset()
    method = build_dt(data, _cfg())
    losses = _train(method, 400)
    assert np.mean(losses[-50:]) < 0.7 * np.mean(losses[:20])
    achieved = []
    for target in (2.0, 5.0, 8.0):
        res = rollout(CountEnv, method.policy(), 4, target_return=target, seed=0)
        achieved.append(res.returns.mean())
        assert abs(res.returns.mean() - target) <= 1.5, (target, res.returns)
    assert achieved[0] < achieved[1] < achieved[2]


@pytest.mark.slow
def test_cdt_keeps_the_cost_budget_when_asked_for_more_return_than_it_allows():
    torch.manual_seed(0)
    data = count_dataset()  # cost = reward here: a budget kappa caps the return at kappa
    method = build_cdt(data, _cfg(relabel=0.3, entropy_coef=0.01))
    _train(method, 400)
    for kappa in (3.0, 6.0):
        res = rollout(CountEnv, method.policy(), 4, target_return=10.0, target_cost=kappa, seed=0)
        assert res.costs.mean() <= kappa + 1.0, (kappa, res.costs)
        assert res.returns.mean() >= kappa - 2.0, (kappa, res.returns)


def test_relabelled_views_take_the_best_episode_within_the_budget():
    data = count_dataset(30)
    views = relabel_views(data, 50, 0.2, np.random.default_rng(0))
    r, c = data.returns, data.episode_costs
    for v in views:
        kappa = c[v.episode] + v.cost_offset
        assert r[v.episode] == r[c <= kappa].max()  # tau*: the best return within the budget
        assert v.return_offset >= 0.0 and r[v.episode] + v.return_offset <= r.max()
    lengths = sum(len(e) for e in data.episodes)
    mass = sum(len(data.episodes[v.episode]) * v.weight for v in views)
    assert mass / (mass + lengths) == pytest.approx(0.2)


def test_dt_policy_batches_episodes_of_different_lengths():
    data = count_dataset(20)
    method = build_dt(data, _cfg(context=3))
    pol = DTPolicy(method.model, method.sampler.norm)
    res = rollout(CountEnv, pol, 3, target_return=5.0)
    assert (res.lengths == 10).all() and res.returns.shape == (3,)
