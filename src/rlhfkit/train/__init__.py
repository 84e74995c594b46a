"""What the methods share (DESIGN.md sec. 2): the supervised loop (`supervised.fit`), the online
driver (`online`) with the reward a run optimizes (`rewards`) and its rollouts (`rollouts`),
process coordination (`dist`: is-main, reductions, global whitening, backward and clip) and
weight sharding (`sharded`: FSDP, ZeRO-3)."""
