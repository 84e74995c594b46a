"""Prefix tuning through peft (Li & Liang 2021): only the prefix trains, and final/ holds the
prefix with the frozen base beside it, which rlhfkit's loaders (and peft's) read back."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("peft")


def _sft(micro_lm, out, *extra: str) -> None:
    from rlhfkit.cli import main

    assert main(["sft", "--model", str(micro_lm), "--out", str(out), "--set", "n_demos=64", "--set", "max_len=40",
                 "--set", "prefix.enabled=true", "--set", "prefix.num_virtual_tokens=4", "--set", "optim.lr=3e-2",
                 "--set", "optim.batch_size=8", "--set", "optim.checkpoint_every=0", *extra]) == 0


def test_prefix_sft_learns_and_saves_prefix_with_base(micro_lm, tmp_path):
    from rlhfkit.lm.models import is_prefix_tuned, load_policy

    out = tmp_path / "sft"
    _sft(micro_lm, out, "--set", "optim.max_steps=16", "--set", "optim.lr=0.3", "--set", "prefix.num_virtual_tokens=16")
    summary = json.loads((out / "summary.json").read_text())
    # The prefix alone fits held-out demonstrations better. The micro model is untrained (NLL near
    # ln 300 = 5.70) and one layer deep, so a prefix moves it little: 5.725 -> 5.671 on this seed.
    assert summary["heldout_nll"] < summary["heldout_nll_before"] - 0.02, summary
    final = out / "final"
    assert (final / "adapter_config.json").exists() and (final / "base" / "config.json").exists()
    base, kept = load_file(str(micro_lm / "model.safetensors")), load_file(str(final / "base" / "model.safetensors"))
    assert all(torch.equal(base[k], kept[k]) for k in base)  # the model's own weights never moved
    prefix = load_file(str(final / "adapter_model.safetensors"))
    assert list(prefix) and all("prompt_embeddings" in k for k in prefix), list(prefix)

    model, tok = load_policy(final)
    assert is_prefix_tuned(model)
    plain, _ = load_policy(micro_lm)
    ids = torch.tensor([tok("Review the kettle:")["input_ids"]])
    with torch.no_grad():
        tuned, untuned = model(input_ids=ids).logits, plain(input_ids=ids).logits
        with model.disable_adapter():
            off = model(input_ids=ids).logits
    assert not torch.allclose(tuned, untuned, atol=1e-4)  # the prefix changes the outputs
    torch.testing.assert_close(off, untuned)  # and without it the base is the original model
    text = model.generate(input_ids=ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert text.shape == (1, ids.shape[1] + 5)

    from peft import AutoPeftModelForCausalLM  # peft's own loader reads the folder too

    with warnings.catch_warnings():  # peft 0.21 on transformers 5.24 warns of its own deprecated calls
        warnings.simplefilter("ignore", FutureWarning)
        theirs = AutoPeftModelForCausalLM.from_pretrained(final)
        with torch.no_grad():
            torch.testing.assert_close(theirs(input_ids=ids).logits, tuned, rtol=1e-4, atol=1e-5)


def test_prefix_rm_falls_back_from_shared_prompt_and_reloads(micro_lm, tmp_path):
    from rlhfkit.algos.reward_model import pair_rewards
    from rlhfkit.cli import main
    from rlhfkit.feedback.formats import write_records
    from rlhfkit.feedback.records import Comparison
    from rlhfkit.lm.data import encode_preferences
    from rlhfkit.lm.models import (
        PrefixConfig,
        is_prefix_tuned,
        reward_model_from,
        with_prefix,
    )

    pairs = [Comparison(f"Review the kettle {i}.", " It is great.", " It is awful.") for i in range(16)]
    model, tok = reward_model_from(micro_lm)
    model = with_prefix(model, PrefixConfig(enabled=True, num_virtual_tokens=3), "SEQ_CLS").eval()
    enc = encode_preferences(tok, pairs[:3], 40)
    for a, b in zip(pair_rewards(model, enc, tok.pad_token_id, True), pair_rewards(model, enc, tok.pad_token_id, False)):
        torch.testing.assert_close(a, b)  # the prompt cache path would drop the prefix: it is not taken
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("prompt_encoder" in n for n in trainable) and any("score" in n for n in trainable)
    assert not any("transformer.h" in n for n in trainable)

    data = tmp_path / "pairs.jsonl"
    write_records(data, pairs)
    out = tmp_path / "rm"
    assert main(["rm", "--model", str(micro_lm), "--data", str(data), "--out", str(out), "--set", "heldout_frac=0",
                 "--set", "prefix.enabled=true", "--set", "optim.max_steps=3", "--set", "optim.batch_size=8",
                 "--set", "optim.checkpoint_every=0"]) == 0
    loaded, _ = reward_model_from(out / "final")
    assert is_prefix_tuned(loaded)


def test_prefix_dpo_reference_is_the_base_and_mistakes_are_clear(micro_lm, tmp_path):
    from rlhfkit.algos.dpo import pair_logprobs
    from rlhfkit.cli import main
    from rlhfkit.errors import UserError
    from rlhfkit.feedback.formats import write_records
    from rlhfkit.feedback.records import Comparison
    from rlhfkit.lm.models import (
        LoRAConfig,
        PrefixConfig,
        load_policy,
        reward_model_from,
        with_prefix,
    )

    pairs = [Comparison(f"Review the lamp {i}.", " Bright and sturdy.", " Broke.") for i in range(3)]
    model, tok = load_policy(micro_lm)
    plain_c, plain_r = pair_logprobs(model, tok, pairs, 40)
    model = with_prefix(model, PrefixConfig(enabled=True, num_virtual_tokens=3))
    tuned_c, _ = pair_logprobs(model, tok, pairs, 40)
    with model.disable_adapter():
        off_c, off_r = pair_logprobs(model, tok, pairs, 40)
    assert not torch.allclose(tuned_c, plain_c)  # a fresh prefix is not the reference...
    torch.testing.assert_close(off_c, plain_c)  # ...the model with it switched off is
    torch.testing.assert_close(off_r, plain_r)

    data = tmp_path / "pairs.jsonl"
    write_records(data, pairs * 4)
    assert main(["dpo", "--policy", str(micro_lm), "--data", str(data), "--out", str(tmp_path / "dpo"),
                 "--set", "prefix.enabled=true", "--set", "heldout_frac=0", "--set", "optim.max_steps=2",
                 "--set", "optim.batch_size=4", "--set", "optim.checkpoint_every=1"]) == 0
    assert (tmp_path / "dpo" / "final" / "base" / "model.safetensors").exists()
    with pytest.raises(UserError, match="choose one adapter"):
        with_prefix(load_policy(micro_lm)[0], PrefixConfig(enabled=True), lora=LoRAConfig(enabled=True))
    out = tmp_path / "sft"
    _sft(micro_lm, out, "--set", "optim.max_steps=2")
    with pytest.raises(UserError, match="cannot start a reward model"):
        reward_model_from(out / "final")
    assert main(["dpo", "--policy", str(out / "final"), "--data", str(data), "--out", str(tmp_path / "dpo")]) != 0


@pytest.mark.parametrize("projection", [False, True])
def test_plan_counts_the_prefix_parameters_peft_creates(micro_lm, projection):
    from rlhfkit.lm.models import PrefixConfig, load_policy, with_prefix
    from rlhfkit.plan import load_shape, prefix_params

    model = with_prefix(load_policy(micro_lm)[0], PrefixConfig(enabled=True, num_virtual_tokens=5,
                                                               projection=projection))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert prefix_params(load_shape(str(micro_lm)), 5, projection) == trainable


def test_prefix_generation_attends_to_the_prefix(micro_lm):
    """Greedy generation of a prefix-tuned policy equals greedy decoding by full forwards, each of
    which sees the prefix. transformers 5.24 renamed the cache argument; peft 0.21 kept the old
    name and generated as if there were no prefix (`lm.kv_cache` mends it)."""
    from rlhfkit.lm.models import PrefixConfig, load_policy, with_prefix

    model, tok = load_policy(micro_lm)
    model = with_prefix(model, PrefixConfig(enabled=True, num_virtual_tokens=4)).eval()
    with torch.no_grad():
        for p in model.prompt_encoder.parameters():
            p.normal_(0, 3.0)  # a prefix strong enough to change what the model says
        ids = torch.tensor([tok("Review the kettle:")["input_ids"]])
        stepwise = ids
        for _ in range(6):
            logits = model(input_ids=stepwise, attention_mask=torch.ones_like(stepwise)).logits
            stepwise = torch.cat([stepwise, logits[:, -1:].argmax(-1)], dim=1)
        with model.disable_adapter():
            plain = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1].argmax(-1)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    assert stepwise[0, ids.shape[1]] != plain[0]  # the prefix matters for the first token...
    assert out.tolist() == stepwise.tolist()  # ...and generation sees it at every step
