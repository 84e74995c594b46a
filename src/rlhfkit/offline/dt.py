"""The Decision Transformer (Chen et al. 2021) and the Constrained Decision Transformer
(Liu et al. 2023) as one small model.

Each step t of a window becomes tokens, in this order:

    DT:   R_t  s_t  a_t                 (return-to-go, state, action)
    CDT:  R_t  C_t  s_t  a_t            (C_t: cost-to-go, Liu et al. 2023, sec. 4.1)

Each token is its modality's linear embedding (an embedding table for discrete actions)
plus an embedding of the episode timestep t, shared by all tokens of the step (Chen et al.
2021, sec. 3: "different than the standard positional embedding"); there is no positional
embedding besides it. A causal GPT-style transformer reads the tokens and the action a_t is
predicted from the hidden state at s_t's token, so it sees R_<=t, C_<=t, s_<=t and a_<t, never
a_t itself or anything later.

Heads: `deterministic` (tanh-bounded mean, trained by MSE: the DT paper), `gaussian` (mean
and a state-dependent log-std: the CDT's stochastic policy, trained by NLL with an entropy
bonus), `categorical` (logits for a discrete action space).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

HEADS = ("deterministic", "gaussian", "categorical")


@dataclass
class DTConfig:
    """The model's shape; saved beside its weights."""

    state_dim: int
    act_dim: int  # action dimensions, or the number of actions when discrete
    discrete: bool = False
    head: str = "deterministic"
    use_cost: bool = False  # the CDT's cost-to-go token
    context: int = 20  # K steps
    max_timestep: int = 1000
    hidden: int = 128
    layers: int = 3
    heads: int = 1
    dropout: float = 0.1
    action_scale: float = 1.0  # continuous actions lie in [-scale, scale] (after the env's rescaling)
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head {self.head!r}: use one of {', '.join(HEADS)}")
        if self.discrete != (self.head == "categorical"):
            raise ValueError("a discrete action space takes the categorical head, a continuous one the others")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")

    @property
    def tokens_per_step(self) -> int:
        return 4 if self.use_cost else 3

    def to_dict(self) -> dict:
        return asdict(self)


class Block(nn.Module):
    """Pre-norm transformer block with causal self-attention (GPT-2's layout)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv, self.proj = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden),
                                 nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        # no dropout on the attention weights: on a CPU it sends SDPA down its slow path (a DT step
        # measured 109 -> 70 ms with all dropout off); the residual and MLP dropout stay
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, N, h/H)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, n, h)))
        return x + self.mlp(self.ln2(x))


@dataclass(frozen=True)
class ActionOutput:
    """Per-step action predictions: the mean (continuous) or logits (discrete), and the
    log-std for the Gaussian head."""

    head: torch.Tensor  # (B, K, A)
    log_std: torch.Tensor | None = None  # (B, K, A)


class DecisionTransformer(nn.Module):
    def __init__(self, cfg: DTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.embed_return = nn.Linear(1, h)
        self.embed_cost = nn.Linear(1, h) if cfg.use_cost else None
        self.embed_state = nn.Linear(cfg.state_dim, h)
        self.embed_action = nn.Embedding(cfg.act_dim, h) if cfg.discrete else nn.Linear(cfg.act_dim, h)
        self.embed_time = nn.Embedding(cfg.max_timestep + 1, h)
        self.ln_in = nn.LayerNorm(h)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(h, cfg.heads, cfg.dropout) for _ in range(cfg.layers))
        self.ln_out = nn.LayerNorm(h)
        out = 2 * cfg.act_dim if cfg.head == "gaussian" else cfg.act_dim
        self.action_head = nn.Linear(h, out)

    def tokens(self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor,
               costs_to_go: torch.Tensor | None, timesteps: torch.Tensor) -> torch.Tensor:
        """The interleaved token embeddings, (B, K * tokens_per_step, hidden)."""
        b, k = timesteps.shape
        time = self.embed_time(timesteps.clamp(max=self.cfg.max_timestep))  # (B, K, h)
        parts = [self.embed_return(returns_to_go.unsqueeze(-1))]
        if self.embed_cost is not None:
            assert costs_to_go is not None, "the CDT needs costs_to_go"
            parts.append(self.embed_cost(costs_to_go.unsqueeze(-1)))
        parts += [self.embed_state(states), self.embed_action(actions)]
        stacked = torch.stack([p + time for p in parts], dim=2)  # (B, K, tokens_per_step, h)
        return stacked.reshape(b, k * len(parts), -1)

    def forward(self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor,
                costs_to_go: torch.Tensor | None, timesteps: torch.Tensor) -> ActionOutput:
        b, k = timesteps.shape
        assert k <= self.cfg.context, f"a window of {k} steps is longer than the context {self.cfg.context}"
        x = self.drop(self.ln_in(self.tokens(states, actions, returns_to_go, costs_to_go, timesteps)))
        for block in self.blocks:
            x = block(x)
        x = self.ln_out(x).view(b, k, self.cfg.tokens_per_step, -1)
        at_state = x[:, :, self.cfg.tokens_per_step - 2]  # (B, K, h): the hidden state at s_t
        out = self.action_head(at_state)
        if self.cfg.head == "categorical":
            return ActionOutput(out)
        if self.cfg.head == "deterministic":
            return ActionOutput(torch.tanh(out) * self.cfg.action_scale)
        mean, log_std = out.chunk(2, dim=-1)
        return ActionOutput(torch.tanh(mean) * self.cfg.action_scale,
                            log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max))
