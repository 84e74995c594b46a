"""What the methods share: the reward a run optimizes (`rewards`); the supervised loop, the
online driver, process coordination and sharding move here from `algos/` (DESIGN.md sec. 2)."""
