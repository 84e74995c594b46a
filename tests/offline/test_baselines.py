"""The baselines: behaviour cloning (bc, pct-bc, bc-safe) and the transformers peer (hf-dt)."""

from __future__ import annotations

import json
import logging

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhfkit.errors import UserError
from rlhfkit.offline.bc import (
    build_bc,
    build_bc_safe,
    build_pct_bc,
    load_bc_policy,
    top_episodes,
)
from rlhfkit.offline.dataset import DatasetInfo, Episode, OfflineDataset, References
from rlhfkit.offline.evaluate import rollout
from rlhfkit.offline.hf_peer import (
    ACTION_PAD,
    HFBatch,
    HFWindowSampler,
    build_hf_dt,
    load_hf_dt_policy,
)
from rlhfkit.offline.method import OfflineConfig
from rlhfkit.offline.sequence import Normalizer

pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning", "error::FutureWarning")



# six episodes, lengths 5-30 (100 steps), returns and costs chosen to hand-check the filters
LENGTHS = [5, 30, 12, 20, 8, 25]
RETURNS = [10.0, 40.0, 25.0, 5.0, 30.0, 15.0]
COSTS = [0.0, 3.0, 1.0, 0.5, 2.0, 0.0]


def make_data(obs_dim: int = 3, act_dim: int = 2, discrete: bool = False, lengths: list[int] = LENGTHS,
              returns: list[float] = RETURNS, costs: list[float] = COSTS, tagged: bool = False,
              bound: float = 2.0, max_steps: int = 200, seed: int = 0) -> OfflineDataset:
    """Episodes of random states acted on by a linear expert: a = clip(W s) or argmax(W s).
    `tagged`: observation column 0 is the episode's index and column 1 the step's."""
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(100).normal(size=(act_dim, obs_dim)) * 0.5
    episodes = []
    for i, n in enumerate(lengths):
        obs = rng.normal(size=(n + 1, obs_dim)).astype(np.float32)
        if tagged:
            obs[:, 0], obs[:, 1] = i, np.arange(n + 1)
        logits = obs[:-1] @ w.T
        actions = logits.argmax(-1).astype(np.int64) if discrete else np.clip(logits, -bound, bound).astype(np.float32)
        term = np.zeros(n, bool)
        term[-1] = True
        episodes.append(Episode(obs, actions, np.full(n, returns[i] / n, np.float32),
                                np.full(n, costs[i] / n, np.float32), term, np.zeros(n, bool)))
    info = DatasetInfo(env_id="Synthetic-v0", discrete=discrete, obs_dim=obs_dim, act_dim=act_dim,
                       max_episode_steps=max_steps, references=References(0.0, 100.0),
                       action_low=None if discrete else [-bound] * act_dim,
                       action_high=None if discrete else [bound] * act_dim)
    return OfflineDataset(info, "medium", episodes)


def expert(data: OfflineDataset, obs: np.ndarray) -> np.ndarray:
    w = np.random.default_rng(100).normal(size=(data.info.act_dim, data.info.obs_dim)) * 0.5
    logits = obs @ w.T
    return logits.argmax(-1) if data.info.discrete else np.clip(logits, -2.0, 2.0)


def kept(data: OfflineDataset, method) -> list[int]:
    """Which of `data`'s episodes (by identity) the method trains on."""
    return [next(i for i, d in enumerate(data.episodes) if d is e) for e in method.sampler.data.episodes]


def fit(method, steps: int, batch_size: int, lr: float) -> list[float]:
    """A plain Adam loop over the method's sampler and loss (the shared loop is tested elsewhere)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(method.model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        out = method.loss_fn(method.sampler.sample(batch_size))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    return losses


# ---- the filters -----------------------------------------------------------------------------

def test_pct_bc_keeps_the_best_episodes_up_to_pct_of_the_steps():
    data = make_data()
    # by return: ep1 (40, 30 steps), ep4 (30, 8), ep2 (25, 12), ep5 (15, 25), ep0, ep3
    # pct 0.5 -> 50 steps: 30 + 8 + 12 = 50 fits, + 25 does not
    method = build_pct_bc(data, OfflineConfig(pct=0.5))
    assert kept(data, method) == [1, 2, 4]
    # pct 0.3 -> 30 steps: the best episode alone fills them; 0.01 -> still the best one
    assert top_episodes(data.returns, np.asarray(LENGTHS), 0.3).tolist() == [1]
    assert top_episodes(data.returns, np.asarray(LENGTHS), 0.01).tolist() == [1]
    assert top_episodes(data.returns, np.asarray(LENGTHS), 1.0).tolist() == [0, 1, 2, 3, 4, 5]
    assert method.conditioned is False and method.name == "pct-bc"
    with pytest.raises(UserError, match="pct"):
        build_pct_bc(data, OfflineConfig(pct=0.0))


def test_bc_safe_keeps_the_episodes_within_the_threshold():
    data = make_data()
    method = build_bc_safe(data, OfflineConfig(cost_threshold=1.0))  # costs 0, 3, 1, 0.5, 2, 0
    assert kept(data, method) == [0, 2, 3, 5]
    method = build_bc_safe(data, OfflineConfig(cost_threshold=0.0))
    assert kept(data, method) == [0, 5]
    with pytest.raises(UserError, match=r"no episode .* cost_threshold=-1 .* lowest episode cost is 0"):
        build_bc_safe(data, OfflineConfig(cost_threshold=-1.0))


def test_a_head_bc_does_not_have_is_refused():
    with pytest.raises(UserError, match="deterministic"):
        build_bc(make_data(), OfflineConfig(head="gaussian"))
    with pytest.raises(UserError, match="one action head"):
        build_hf_dt(make_data(), OfflineConfig(head="gaussian"))


# ---- behaviour cloning learns ----------------------------------------------------------------

@pytest.mark.parametrize("discrete", [False, True])
def test_bc_learns_a_linear_expert(discrete):
    data = make_data(act_dim=2, discrete=discrete, lengths=[60] * 6)
    method = build_bc(data, OfflineConfig(hidden=32, seed=0))
    assert method.model.cfg.hidden == 64  # twice the transformer's width
    losses = fit(method, steps=200, batch_size=64, lr=3e-3)
    assert np.mean(losses[-20:]) < 0.25 * np.mean(losses[:20])
    policy = method.policy()
    policy.reset(4, 0.0, None)
    obs = np.concatenate([e.observations[:2] for e in data.episodes[:2]])  # states seen in training
    acts = policy.act(obs)
    if discrete:
        assert (acts == expert(data, obs)).all()
    else:
        np.testing.assert_allclose(acts, expert(data, obs), atol=0.2)
    # the model rebuilds from what the method saves
    saved = json.loads(json.dumps(method.saved))
    again = load_bc_policy(saved, method.model.state_dict())
    again.reset(len(obs), 0.0, None)
    np.testing.assert_array_equal(again.act(obs), acts)


def test_bc_samples_single_transitions_reproducibly():
    data = make_data()
    a, b = build_bc(data, OfflineConfig(seed=3)), build_bc(data, OfflineConfig(seed=3))
    x, y = a.sampler.sample(16), b.sampler.sample(16)
    assert x.states.shape == (16, 1, 3) and x.mask.sum() == 16
    assert torch.equal(x.states, y.states) and torch.equal(x.actions, y.actions)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


# ---- the transformers peer: collator ----------------------------------------------------------

def test_hf_collator_left_pads_and_standardizes():
    data = make_data(tagged=True)
    norm = Normalizer.fit(data)
    k = 10
    batch = HFWindowSampler(data, k, norm, max_ep_len=200, seed=1).sample(64)
    assert isinstance(batch, HFBatch)
    obs = np.concatenate([e.observations[:-1] for e in data.episodes]).astype(np.float64)
    mean, std = obs.mean(0), obs.std(0) + 1e-6
    padded_rows = 0
    for b in range(64):
        m = batch.attention_mask[b].numpy()
        w = int(m.sum())
        pad = k - w
        assert (m == np.r_[np.zeros(pad), np.ones(w)]).all()  # left padding, real steps at the end
        padded_rows += pad > 0
        assert (batch.actions[b, :pad] == ACTION_PAD).all() and (batch.returns_to_go[b, :pad] == 0).all()
        assert (batch.states[b, :pad] == 0).all() and (batch.timesteps[b, :pad] == 0).all()
        raw = batch.states[b, pad:].numpy() * std + mean  # undo the standardization
        ep, steps = int(round(raw[0, 0])), np.round(raw[:, 1]).astype(int)
        start, n = steps[0], LENGTHS[ep]
        assert (np.round(raw[:, 0]) == ep).all() and (steps == np.arange(start, start + w)).all()
        assert w == min(k, n - start)  # the window ends at start + K or at the episode's end
        assert (batch.timesteps[b, pad:].numpy() == steps).all()
        e = data.episodes[ep]
        np.testing.assert_allclose(batch.states[b, pad:].numpy(), (e.observations[steps] - mean) / std, atol=1e-5)
        np.testing.assert_allclose(batch.actions[b, pad:].numpy(), e.actions[steps] / 2.0, atol=1e-6)  # [-2, 2] -> [-1, 1]
        rtg = np.array([e.rewards[s:].sum() for s in steps]) / np.abs(data.returns).max()
        np.testing.assert_allclose(batch.returns_to_go[b, pad:, 0].numpy(), rtg, rtol=1e-5)
    assert padded_rows > 0


def test_hf_collator_discrete_one_hot_targets_and_time_clip():
    data = make_data(discrete=True, tagged=True, max_steps=10)
    batch = HFWindowSampler(data, 6, Normalizer.fit(data), max_ep_len=10, seed=0).sample(64)
    real = batch.attention_mask > 0
    assert batch.targets.dtype == torch.long and batch.targets.shape == (64, 6)
    assert (batch.actions[real].sum(-1) == 1).all()  # one-hot
    assert (batch.actions[real].argmax(-1) == batch.targets[real]).all()
    assert (batch.actions[~real] == ACTION_PAD).all() and (batch.targets[~real] == 0).all()
    assert batch.timesteps.max() == 9  # clipped to max_ep_len - 1 (episodes run to 30 steps)


def test_hf_collator_is_seeded_and_resumes_exactly():
    data = make_data()
    norm = Normalizer.fit(data)
    one, two = (HFWindowSampler(data, 8, norm, 200, seed=5) for _ in range(2))
    x, y = one.sample(32), two.sample(32)
    assert all(torch.equal(getattr(x, f), getattr(y, f)) for f in ("states", "actions", "timesteps", "attention_mask"))
    other = HFWindowSampler(data, 8, norm, 200, seed=6).sample(32)
    assert not torch.equal(x.timesteps, other.timesteps)
    state = json.loads(json.dumps(one.state_dict()))
    expected = one.sample(32)
    fresh = HFWindowSampler(data, 8, norm, 200, seed=99)
    fresh.load_state_dict(state)
    got = fresh.sample(32)
    assert all(torch.equal(getattr(expected, f), getattr(got, f))
               for f in ("states", "actions", "targets", "returns_to_go", "timesteps", "attention_mask"))


# ---- the transformers peer: loss and training -------------------------------------------------

def tiny(**kw) -> OfflineConfig:
    return OfflineConfig(**{"hidden": 32, "layers": 2, "heads": 2, "context": 6, "dropout": 0.0, **kw})


@pytest.mark.parametrize("discrete", [False, True])
def test_hf_loss_ignores_padded_steps(discrete):
    data = make_data(discrete=discrete)
    method = build_hf_dt(data, tiny(context=12))
    batch = method.sampler.sample(32)
    pad = batch.attention_mask == 0
    assert pad.any()
    base = method.loss_fn(batch).loss.item()
    gen = torch.Generator().manual_seed(0)
    noise = lambda x: torch.randn(x.shape, generator=gen) * 5  # noqa: E731
    changed = HFBatch(
        states=torch.where(pad[..., None], noise(batch.states), batch.states),
        actions=torch.where(pad[..., None], noise(batch.actions), batch.actions),
        targets=torch.where(pad, 1, batch.targets) if discrete else torch.where(pad[..., None], 3.0, batch.targets),
        returns_to_go=torch.where(pad[..., None], noise(batch.returns_to_go), batch.returns_to_go),
        timesteps=torch.where(pad, 7, batch.timesteps), attention_mask=batch.attention_mask)
    assert method.loss_fn(changed).loss.item() == pytest.approx(base, rel=1e-5, abs=1e-6)
    real = (~pad).nonzero()[0]
    targets = batch.targets.clone()
    targets[real[0], real[1]] = 1 - targets[real[0], real[1]] if discrete else targets[real[0], real[1]] + 1.0
    assert method.loss_fn(HFBatch(batch.states, batch.actions, targets, batch.returns_to_go, batch.timesteps,
                                  batch.attention_mask)).loss.item() != pytest.approx(base, rel=1e-5)


@pytest.mark.parametrize("discrete", [False, True])
def test_hf_dt_loss_falls_and_the_model_is_built_from_our_config(discrete):
    logged: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = logged.append  # transformers' own logger does not propagate to pytest's caplog
    logging.getLogger("transformers").addHandler(handler)
    try:
        data = make_data(discrete=discrete, lengths=[40] * 6)
        method = build_hf_dt(data, tiny(seed=0))
        c = method.model.config
        assert (c.hidden_size, c.n_layer, c.n_head, c.n_inner, c.activation_function) == (32, 2, 2, 128, "relu")
        assert c.max_ep_len == 200 and c.action_tanh != discrete and c.resid_pdrop == 0.0
        assert method.conditioned and not method.uses_cost
        losses = fit(method, steps=120, batch_size=16, lr=1e-3)
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert np.mean(losses[-15:]) < 0.5 * np.mean(losses[:15])
    assert not logged, [r.getMessage() for r in logged]


# ---- both policies act in real environments -------------------------------------------------

ENVS = {"CartPole-v1": dict(obs_dim=4, act_dim=2, discrete=True, max_steps=500),
        "Pendulum-v1": dict(obs_dim=3, act_dim=1, discrete=False, max_steps=40)}


@pytest.mark.parametrize("env_id", list(ENVS))
@pytest.mark.parametrize("build", [build_bc, build_hf_dt], ids=["bc", "hf-dt"])
def test_policies_roll_out(env_id, build):
    spec = ENVS[env_id]
    data = make_data(obs_dim=spec["obs_dim"], act_dim=spec["act_dim"], discrete=spec["discrete"],
                     max_steps=spec["max_steps"])
    method = build(data, tiny(context=4))
    method.model.train()
    result = rollout(lambda: gym.make(env_id, max_episode_steps=spec["max_steps"]), method.policy(), episodes=3,
                     target_return=float(data.returns.max()), seed=0)
    assert result.returns.shape == (3,) and (result.lengths >= 1).all()
    assert (result.lengths <= spec["max_steps"]).all() and np.isfinite(result.returns).all()
    assert method.model.training  # acting leaves the training mode as it was
    if build is build_hf_dt:  # the rebuilt peer acts as the original
        saved = json.loads(json.dumps(method.saved))
        again = rollout(lambda: gym.make(env_id, max_episode_steps=spec["max_steps"]),
                        load_hf_dt_policy(saved, method.model.state_dict()), episodes=3,
                        target_return=float(data.returns.max()), seed=0)
        np.testing.assert_allclose(again.returns, result.returns)
