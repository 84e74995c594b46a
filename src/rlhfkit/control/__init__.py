"""Deep RL from human preferences for control tasks (Christiano et al. 2017).

Pieces, each replaceable: `envs` (spaces, features, absorbing state), `segments`
(episodes, fixed-length segments, the recording wrapper), `reward` (the Bradley-Terry
ensemble), `queries` (random / disagreement / mix), `labelers` (synthetic; `web` for the
labeling app), `render` (clips), `agent` (stable-baselines3), `loop` (the three processes).
"""

# The query rules (`queries.select_queries`); here so the CLI can list them without torch.
QUERY_KINDS: tuple[str, ...] = ("random", "disagreement", "mix")
