"""The peer: transformers' `DecisionTransformerModel`, trained the way the Hugging Face blog
trains it ("Train your first Decision Transformer", Beeching and Simonini 2022,
huggingface.co/blog/train-decision-transformers, and its notebook's evaluation loop).
Our DT (`offline/dt.py`) is measured side by side with it.

What we take from the blog:
- the collator: trajectories drawn in proportion to their length, a start drawn uniformly
  inside, a window of up to K steps from there (cut at the episode's end), LEFT-padded to K
  steps with zeros for states, returns-to-go and timesteps and -10 for actions, an attention
  mask 0 on the padding, states standardized by the dataset's mean and std, returns-to-go
  divided by a scale, timesteps clipped to max_ep_len - 1;
- the loss: mean squared error of `action_preds` against the actions at unpadded steps
  (`ops.actions.action_mse` averages over action dimensions, then over real steps: the same
  number as the blog's mean over the selected rows);
- the model: DecisionTransformerConfig with hidden 128, 3 layers, 1 head, n_inner 4 * hidden,
  relu, dropout 0.1 everywhere (the config's defaults; here all read from OfflineConfig);
- the optimizer settings: AdamW, lr 1e-4, weight decay 1e-4, warmup, grad-norm clip 0.25;
- evaluation: the last K steps left-padded (zeros, mask 0), a zero placeholder for the action
  still to choose, the model's action at the last position, the return-to-go lowered by each
  reward (divided by the same scale).

Where we differ, and why:
- Training runs in our loop (`offline/train.py`) with OfflineConfig's lr, weight_decay, warmup,
  grad_clip, steps and batch_size, so both models get the same budget. The blog's Trainer
  warms up over 10% of its steps (our default, 300 of 3000 steps, is the same share) and then
  decays the learning rate linearly to 0; it also exempts biases and LayerNorm weights from
  weight decay. Whatever our loop does there, it does for both models.
- The return scale is the `Normalizer`'s (the largest |episode return| in the data) instead of
  the blog's fixed 1000, which suits MuJoCo returns but not CartPole's or Pendulum's; our DT
  uses the same scale.
- Padding is added after standardizing (the blog standardizes after padding, so its padded
  states are -mean/std); padded steps are masked out of attention and of the loss, so neither
  value reaches a real step (a test checks this).
- Continuous actions are mapped from [low, high] to [-1, 1] for the model (the tanh range)
  and back when acting; for HalfCheetah, the blog's task, that map is the identity. An action
  space without bounds is left as it is, with `action_tanh=False`.
- Discrete actions, which the blog does not cover: the model reads one-hot actions (-10 on
  padding), `action_tanh=False`, and `action_preds` are logits trained with cross-entropy
  (`ops.actions.action_cross_entropy`); acting takes the argmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel

from rlhfkit.errors import UserError
from rlhfkit.offline.dataset import DatasetInfo, OfflineDataset, to_go
from rlhfkit.offline.method import Method, OfflineConfig
from rlhfkit.offline.sequence import Normalizer
from rlhfkit.ops.actions import ACTION_LOSSES
from rlhfkit.ops.losses import LossOutput
from rlhfkit.types import batch_to

ACTION_PAD = -10.0  # the blog collator's value for padded actions


@dataclass(frozen=True)
class HFBatch:
    """B windows of K steps, left-padded (`attention_mask` 0 on padding), as the model reads them."""

    states: torch.Tensor  # (B, K, obs_dim) standardized, 0 on padding
    actions: torch.Tensor  # (B, K, A) float: scaled to [-1, 1], or one-hot; ACTION_PAD on padding
    targets: torch.Tensor  # (B, K, A) float as `actions`, or (B, K) long action indices (0 on padding)
    returns_to_go: torch.Tensor  # (B, K, 1) divided by the return scale, 0 on padding
    timesteps: torch.Tensor  # (B, K) long, 0 on padding
    attention_mask: torch.Tensor  # (B, K) float

    def __post_init__(self) -> None:
        b, k = self.attention_mask.shape
        assert self.states.shape[:2] == self.actions.shape[:2] == self.targets.shape[:2] == (b, k)
        assert self.returns_to_go.shape == (b, k, 1) and self.timesteps.shape == (b, k)


class ActionCodec:
    """Env actions <-> what the model reads and predicts: an affine map of [low, high] onto
    [-1, 1] (continuous), or one-hot vectors and argmax (discrete)."""

    def __init__(self, discrete: bool, dim: int, low: list[float] | None = None,
                 high: list[float] | None = None) -> None:
        self.discrete, self.dim = discrete, dim
        bounded = not discrete and low is not None and high is not None
        self.low = np.asarray(low, dtype=np.float32) if bounded else None
        self.high = np.asarray(high, dtype=np.float32) if bounded else None

    @classmethod
    def of(cls, info: DatasetInfo) -> "ActionCodec":
        return cls(info.discrete, info.act_dim, info.action_low, info.action_high)

    def to_dict(self) -> dict:
        return {"discrete": self.discrete, "dim": self.dim,
                "low": None if self.low is None else self.low.tolist(),
                "high": None if self.high is None else self.high.tolist()}

    @property
    def bounded(self) -> bool:
        return self.low is not None

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """(..., act_dim) continuous or (...,) integer -> (..., A) float32."""
        if self.discrete:
            return np.eye(self.dim, dtype=np.float32)[np.asarray(actions, dtype=np.int64)]
        a = np.asarray(actions, dtype=np.float32)
        if self.bounded:
            a = (a - (self.high + self.low) / 2) / ((self.high - self.low) / 2)
        return a.astype(np.float32)

    def decode(self, preds: np.ndarray) -> np.ndarray:
        """(n, A) predictions -> env actions (argmax, or mapped back to [low, high] and clipped)."""
        if self.discrete:
            return preds.argmax(-1)
        if self.bounded:
            return np.clip((self.high + self.low) / 2 + preds * (self.high - self.low) / 2, self.low, self.high)
        return preds


class HFWindowSampler:
    """The blog's collator as a sampler: `sample(batch_size) -> HFBatch`, reproducible from
    `seed` and resumable through `state_dict()` (the numpy Generator's state)."""

    def __init__(self, data: OfflineDataset, context: int, norm: Normalizer, max_ep_len: int, seed: int = 0) -> None:
        if context < 1:
            raise ValueError(f"context must be at least 1, got {context}")
        self.context, self.max_ep_len = context, max_ep_len
        self.discrete = data.info.discrete
        codec = ActionCodec.of(data.info)
        eps = data.episodes
        self.states = [norm.states(e.observations[:-1]) for e in eps]  # each (T, obs_dim)
        self.actions = [codec.encode(e.actions) for e in eps]  # each (T, A)
        self.indices = [e.actions.astype(np.int64) for e in eps] if self.discrete else []  # discrete targets
        self.rtg = [r / norm.return_scale for r in to_go([e.rewards for e in eps])]  # each (T,)
        lengths = np.asarray([len(e) for e in eps], dtype=np.float64)
        self.p = lengths / lengths.sum()  # "sample according to timesteps" (the blog's p_sample)
        self.act_width = self.actions[0].shape[1]
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    def sample(self, batch_size: int) -> HFBatch:
        k = self.context
        s = np.zeros((batch_size, k, self.states[0].shape[1]), np.float32)
        a = np.full((batch_size, k, self.act_width), ACTION_PAD, np.float32)
        y = np.zeros((batch_size, k), np.int64)  # discrete targets: action indices, 0 on padding
        r = np.zeros((batch_size, k, 1), np.float32)
        t = np.zeros((batch_size, k), np.int64)
        m = np.zeros((batch_size, k), np.float32)
        for b, i in enumerate(self.rng.choice(len(self.p), size=batch_size, p=self.p)):
            n = len(self.states[i])
            start = int(self.rng.integers(n))  # the blog's random.randint(0, len - 1)
            end = min(start + k, n)
            pad = k - (end - start)  # left padding: the window's real steps sit at the end
            s[b, pad:] = self.states[i][start:end]
            a[b, pad:] = self.actions[i][start:end]
            if self.discrete:
                y[b, pad:] = self.indices[i][start:end]
            r[b, pad:, 0] = self.rtg[i][start:end]
            t[b, pad:] = np.minimum(np.arange(start, end), self.max_ep_len - 1)
            m[b, pad:] = 1.0
        actions = torch.from_numpy(a)
        targets = torch.from_numpy(y) if self.discrete else actions.clone()  # continuous: the actions themselves
        return HFBatch(torch.from_numpy(s), actions, targets, torch.from_numpy(r), torch.from_numpy(t),
                       torch.from_numpy(m))


def hf_dt_loss(model: DecisionTransformerModel, batch: HFBatch) -> LossOutput:
    """The blog's TrainableDT loss: the action loss at unpadded steps (MSE, or cross-entropy on
    logits for a discrete action space)."""
    batch = batch_to(batch, model.device)
    out = model(states=batch.states, actions=batch.actions, returns_to_go=batch.returns_to_go,
                timesteps=batch.timesteps, attention_mask=batch.attention_mask, return_dict=True)
    head = "categorical" if batch.targets.dim() == 2 else "deterministic"  # long action indices, or actions
    return ACTION_LOSSES[head](out.action_preds, batch.targets, batch.attention_mask)


def _pad_left(x: np.ndarray, k: int) -> np.ndarray:
    """(n, w, ...) -> (n, k, ...) with zeros in front (the notebook's evaluation padding)."""
    pad = np.zeros((x.shape[0], k - x.shape[1], *x.shape[2:]), dtype=x.dtype)
    return np.concatenate([pad, x], axis=1)


class HFDTPolicy:
    """Acts as the blog's notebook does: the last K steps, left-padded, with a zero placeholder
    for the action to choose; the return-to-go falls by each reward."""

    def __init__(self, model: DecisionTransformerModel, norm: Normalizer, context: int, codec: ActionCodec) -> None:
        self.model, self.norm, self.context, self.codec = model, norm, context, codec
        self.max_ep_len = model.config.max_ep_len

    def reset(self, n: int, target_return: float, target_cost: float | None) -> None:
        self.s: list[np.ndarray] = []  # each (n_alive, obs_dim), one per step so far (the last K kept)
        self.a: list[np.ndarray] = []  # each (n_alive, A), encoded
        self.rs: list[np.ndarray] = []  # each (n_alive,), scaled return-to-go
        self.r = np.full(n, target_return, dtype=np.float64)
        self.t = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        k, n = self.context, len(obs)
        self.s.append(self.norm.states(obs))
        self.a.append(np.zeros((n, self.model.config.act_dim), np.float32))
        self.rs.append((self.r / self.norm.return_scale).astype(np.float32))
        self.s, self.a, self.rs = self.s[-k:], self.a[-k:], self.rs[-k:]
        w = len(self.s)
        times = np.minimum(np.arange(self.t + 1 - w, self.t + 1), self.max_ep_len - 1)
        mask = _pad_left(np.ones((n, w), np.float32), k)
        inputs = {"states": _pad_left(np.stack(self.s, 1), k), "actions": _pad_left(np.stack(self.a, 1), k),
                  "returns_to_go": _pad_left(np.stack(self.rs, 1)[..., None], k),
                  "timesteps": _pad_left(np.broadcast_to(times, (n, w)).copy(), k), "attention_mask": mask}
        device = self.model.device
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = self.model(**{key: torch.from_numpy(v).to(device) for key, v in inputs.items()}, return_dict=True)
        self.model.train(was_training)
        return self.codec.decode(out.action_preds[:, -1].float().cpu().numpy())

    def observe(self, actions: np.ndarray, rewards: np.ndarray, costs: np.ndarray, keep: np.ndarray) -> None:
        self.a[-1] = self.codec.encode(actions)
        self.r = self.r - rewards
        self.t += 1
        self.s, self.a, self.rs = [x[keep] for x in self.s], [x[keep] for x in self.a], [x[keep] for x in self.rs]
        self.r = self.r[keep]


def hf_config(info: DatasetInfo, cfg: OfflineConfig) -> DecisionTransformerConfig:
    """The model's config from the dataset and ours (DecisionTransformerConfig's own defaults
    are hidden 128, 3 layers, 1 head, relu, dropout 0.1: the blog's model)."""
    if cfg.hidden % cfg.heads:
        raise UserError(f"hf-dt: hidden {cfg.hidden} is not divisible by heads {cfg.heads}")
    return DecisionTransformerConfig(
        state_dim=info.obs_dim, act_dim=info.act_dim, hidden_size=cfg.hidden, max_ep_len=info.max_episode_steps,
        action_tanh=ActionCodec.of(info).bounded, n_layer=cfg.layers, n_head=cfg.heads,
        n_inner=4 * cfg.hidden, activation_function="relu", resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        # GPT-2's token ids (50256) lie outside the DT's one-entry vocabulary and make transformers warn
        bos_token_id=None, eos_token_id=None,
        use_cache=False)  # every call reads its whole window: a key/value cache would only be filled and dropped


def build_hf_dt(data: OfflineDataset, cfg: OfflineConfig) -> Method:
    if cfg.head not in ("auto", "categorical" if data.info.discrete else "deterministic"):
        raise UserError(f"hf-dt: DecisionTransformerModel has one action head; got head={cfg.head!r} (use auto)")
    config = hf_config(data.info, cfg)
    with torch.random.fork_rng(devices=[]):  # weights from cfg.seed, the global stream untouched
        torch.manual_seed(cfg.seed)
        model = DecisionTransformerModel(config)
    norm = Normalizer.fit(data)
    codec = ActionCodec.of(data.info)
    sampler = HFWindowSampler(data, cfg.context, norm, config.max_ep_len, seed=cfg.seed)
    return Method(name="hf-dt", model=model, sampler=sampler, loss_fn=lambda batch: hf_dt_loss(model, batch),
                  policy=lambda: HFDTPolicy(model, norm, cfg.context, codec), conditioned=True, uses_cost=False,
                  saved={"model": config.to_dict(), "normalizer": norm.to_dict(), "context": cfg.context,
                         "actions": codec.to_dict()})


def load_hf_dt_policy(saved: dict, state_dict: dict[str, torch.Tensor]) -> HFDTPolicy:
    """Rebuild a trained peer from `Method.saved` and the model's weights."""
    model = DecisionTransformerModel(DecisionTransformerConfig.from_dict(saved["model"]))
    model.load_state_dict(state_dict)
    return HFDTPolicy(model.eval(), Normalizer.from_dict(saved["normalizer"]), saved["context"],
                      ActionCodec(**saved["actions"]))
