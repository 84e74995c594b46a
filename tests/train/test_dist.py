"""train/dist.py on one process (every collective returns its input) and the index bookkeeping
a W-process job relies on; the 2-process equivalence itself is tests/scale's."""

from __future__ import annotations

import torch

from rlhfkit.ops.advantages import whiten
from rlhfkit.train.dist import Dist


class _Acc:
    """Just a place in a job: rank and size (no collective is called by these checks)."""

    def __init__(self, rank: int, world: int) -> None:
        self.process_index, self.num_processes = rank, world


def test_one_process_returns_its_input():
    d = Dist()
    x, mask = torch.randn(3, 5), torch.ones(3, 5)
    mask[0, 3:] = 0
    assert d.is_main and d.world == 1 and d.shard([1, 2, 3]) == [1, 2, 3]
    assert torch.equal(d.sum(x), x) and torch.equal(d.gather(x[0]), x[0]) and d.gather_objects(7) == [7]
    assert torch.equal(d.mean(x[0]), x[0].mean()) and torch.equal(d.whiten(x, mask), whiten(x, mask))
    assert d.share_weight(5) == 1.0 and d.mean_metrics({"a": 1.0}, 3) == {"a": 1.0}
    assert d.local_rows(range(4)) == [0, 1, 2, 3]


def test_shards_and_rows_agree():
    """Global sample j of prompt j // G is row local_rows(...) of the process holding that prompt."""
    W, G, prompts = 3, 2, list(range(8))
    for rank in range(W):
        d = Dist(_Acc(rank, W))  # type: ignore[arg-type]
        mine = d.shard(prompts)
        local = [p for p in mine for _ in range(G)]  # this process's rollout: G samples per prompt
        batch = range(3, 13)  # a slice of the global batch of 8 * G samples
        rows = d.local_rows(batch, G)
        assert [local[r] for r in rows] == [j // G for j in batch if (j // G) % W == rank]
    assert Dist(_Acc(1, 2)).local_rows(range(8)) == [0, 1, 2, 3]  # type: ignore[arg-type]
    assert not Dist(_Acc(1, 2)).is_main  # type: ignore[arg-type]
