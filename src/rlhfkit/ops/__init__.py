"""The math of the toolkit, as pure functions of tensors. Each formula lives here once."""

from rlhfkit.ops.advantages import discounted_returns, gae, whiten
from rlhfkit.ops.kl import AdaptiveKLController, FixedKLController, kl_estimate, kl_penalized_rewards
from rlhfkit.ops.logprobs import entropy_from_logits, masked_mean, masked_sum, masked_var, response_logprobs
from rlhfkit.ops.losses import LossOutput, bradley_terry, dpo, ppo_clip, rating_regression, sft_nll, value_loss

__all__ = [
    "AdaptiveKLController", "FixedKLController", "LossOutput", "bradley_terry", "discounted_returns", "dpo",
    "entropy_from_logits", "gae", "kl_estimate", "kl_penalized_rewards", "masked_mean", "masked_sum", "masked_var",
    "ppo_clip", "rating_regression", "response_logprobs", "sft_nll", "value_loss", "whiten",
]
