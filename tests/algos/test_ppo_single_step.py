"""PPO with one epoch of one minibatch reuses its training forward as the "old" policy's;
that shortcut must take exactly the steps the two-forward path takes."""

from __future__ import annotations

import torch
from test_online import _setup

from rlhfkit.algos import ppo
from rlhfkit.lm.forward import ValueHead
from rlhfkit.train.online import KLConfig, RolloutConfig, kl_controller
from rlhfkit.train.rollouts import RewardNormalizer


def _run(tiny_lm, iters: int = 2) -> tuple[list[dict], dict[str, torch.Tensor]]:
    s = _setup(tiny_lm, seed=5)
    cfg = ppo.PPOConfig(rollout=RolloutConfig(batch_prompts=8, max_new_tokens=12), kl=KLConfig(beta=0.05),
                        lr=5e-4, minibatch=8, ppo_epochs=1, seed=5)
    vh = ValueHead(s.policy.config.hidden_size)
    opt = torch.optim.Adam(list(s.policy.parameters()) + list(vh.parameters()), lr=cfg.lr)
    kl_ctl, norm = kl_controller(cfg.kl), RewardNormalizer()
    hist = [ppo.ppo_iteration(s, s.policy, s.tokenizer, vh, opt, kl_ctl, norm, cfg, it) for it in range(iters)]
    return hist, {k: v.detach().clone() for k, v in s.policy.state_dict().items()}


def test_single_step_shortcut_equals_two_forwards(tiny_lm, monkeypatch):
    assert ppo._single_step(ppo.PPOConfig(rollout=RolloutConfig(batch_prompts=8), minibatch=8, ppo_epochs=1))
    fast_hist, fast_w = _run(tiny_lm)
    monkeypatch.setattr(ppo, "_single_step", lambda cfg: False)
    slow_hist, slow_w = _run(tiny_lm)
    for a, b in zip(fast_hist, slow_hist):
        for k in ("ppo/policy_loss", "ppo/value_loss", "rollout/kl", "rollout/score"):
            assert abs(a[k] - b[k]) <= 1e-5 * max(1.0, abs(b[k])), (k, a[k], b[k])
        assert a["ppo/ratio_max"] == 1.0 or abs(a["ppo/ratio_max"] - 1.0) < 1e-5  # on-policy: ratio 1
    moved = [k for k in fast_w if not torch.equal(fast_w[k], _setup(tiny_lm).policy.state_dict()[k])]
    assert moved  # it trained
    # The two paths batch the rows in a different order, so matmuls round differently; Adam's
    # g / sqrt(v) amplifies that for near-zero gradients, up to a fraction of one step (lr = 5e-4).
    for k in fast_w:
        torch.testing.assert_close(fast_w[k], slow_w[k], rtol=1e-3, atol=1e-4)
