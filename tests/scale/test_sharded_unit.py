"""Single-process checks of the pieces `fit` uses under weight sharding (train/sharded.py):
the meta skeleton costs no memory and keeps ties, the transplant hands back an ordinary model
of the right class with the gathered weights, and mismatched optimizer states are refused."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlhfkit.errors import UserError
from rlhfkit.train import sharded
from rlhfkit.train.dist import accelerator_for


def _lm() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=16))


def test_meta_copy_keeps_shapes_and_ties_without_memory():
    model = _lm()
    skel = sharded.meta_copy(model)
    assert type(skel) is GPT2LMHeadModel
    assert all(p.is_meta for p in skel.parameters())
    assert [(k, p.shape) for k, p in skel.named_parameters()] == [(k, p.shape) for k, p in model.named_parameters()]
    assert skel.lm_head.weight is skel.transformer.wte.weight  # the tie survives
    assert not model.transformer.wte.weight.is_meta  # the original is untouched


def test_restore_full_hands_back_the_gathered_weights_in_an_ordinary_model():
    acc = accelerator_for("cpu")
    model, trained = _lm(), _lm()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)  # "trained": every weight differs from the original
    skel = sharded.meta_copy(model)

    class Wrapped(GPT2LMHeadModel):  # stands in for FSDP's in-place class swap
        pass

    model.__class__ = Wrapped
    model.eval()  # no dropout in the comparison below
    trained.eval()
    sharded.restore_full(acc, trained, skel, model)
    assert type(model) is GPT2LMHeadModel
    assert model.lm_head.weight is model.transformer.wte.weight
    for (k, a), (_, b) in zip(model.state_dict().items(), trained.state_dict().items()):
        assert torch.equal(a, b), k
    assert not model.training  # the mode the sharded model was in
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(model(ids).logits, trained(ids).logits)


def test_full_ndim_reads_a_partitioned_parameter_shape():
    p = torch.nn.Parameter(torch.empty(0))
    assert sharded.full_ndim(p) == 1
    p.ds_shape = torch.Size([4, 8])  # what zero.Init leaves on a partitioned parameter
    assert sharded.full_ndim(p) == 2


def test_optimizer_states_of_the_other_kind_are_refused():
    model = _lm()
    opt = torch.optim.AdamW(model.parameters())
    model(torch.tensor([[1, 2]]), labels=torch.tensor([[1, 2]])).loss.backward()
    opt.step()
    sharded.check_unsharded_optimizer_state(opt.state_dict())  # index-keyed: fine
    with pytest.raises(UserError, match="sharded run"):
        sharded.check_unsharded_optimizer_state({"zero3": "zero3-step-2"})
    with pytest.raises(UserError, match="sharded run"):
        sharded.check_unsharded_optimizer_state({"state": {"lm_head.weight": {}}, "param_groups": []})
