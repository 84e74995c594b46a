"""Chat templates through the token pipeline: prompts, assistant masks, end of turn."""

from __future__ import annotations

import pytest
import torch

from rlhfkit.feedback.records import Demonstration, Message
from rlhfkit.lm.chat import MaskError, encode_conversation, end_of_turn_token, fit_end_of_turn, render_prompt
from rlhfkit.lm.data import encode_pairs, sft_batch
from rlhfkit.lm.models import train_tokenizer
from rlhfkit.lm.sampling import encode_prompts

# ChatML as SmolLM2 writes it: a default system turn, each turn closed by <|im_end|> and a newline.
CHATML = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
          "{{ '<|im_start|>system\nBe brief.<|im_end|>\n' }}{% endif %}"
          "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# A Llama-3-like template: turns end with <|eot|>, which is not the tokenizer's EOS.
EOT_STYLE = ("{{ '<|bos|>' }}{% for m in messages %}{{ '<|hdr|>' + m['role'] + '\n' + m['content'] + '<|eot|>' }}"
             "{% endfor %}{% if add_generation_prompt %}{{ '<|hdr|>assistant\n' }}{% endif %}")
TEXTS = ["Hello there, how are you today?", "I am fine. Thanks for asking!", "What is two plus two?",
         "It is four.", "Tell me a joke about cats.", "system user assistant Be brief."] * 20


def chat_tokenizer(template: str = CHATML, eos: str = "<|im_end|>"):
    tok = train_tokenizer(TEXTS, 400)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|hdr|>", "<|eot|>",
                                                          "<|bos|>"]})
    tok.eos_token = eos
    tok.chat_template = template
    return tok


def test_a_plain_prompt_is_one_user_turn_ending_in_the_generation_prompt():
    tok = chat_tokenizer()
    text = render_prompt(tok, "What is two plus two?")
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is two plus two?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    ids = encode_prompts(tok, ["What is two plus two?"], 512)[0]
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")  # special tokens parsed, not spelled out


def test_a_tokenizer_without_a_template_reads_the_prompt_as_it_is():
    tok = train_tokenizer(TEXTS, 400)
    assert render_prompt(tok, "Review of the kettle:") == "Review of the kettle:"
    (ids, start), = encode_pairs(tok, ["Hi"], [" there"], 64)
    assert ids == tok("Hi")["input_ids"] + tok(" there")["input_ids"] + [tok.eos_token_id]
    assert start == len(tok("Hi")["input_ids"])


def test_pairs_end_with_the_end_of_turn_token_exactly_where_the_template_closes_the_turn():
    tok = chat_tokenizer()
    (ids, start), = encode_pairs(tok, ["What is two plus two?"], ["It is four."], 512)
    whole = tok.apply_chat_template([{"role": "user", "content": "What is two plus two?"},
                                     {"role": "assistant", "content": "It is four."}], tokenize=False)
    expect = tok(whole, add_special_tokens=False)["input_ids"]
    assert ids == expect[: len(ids)] and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[start:], skip_special_tokens=True) == "It is four."


def test_the_sft_mask_covers_every_assistant_turn_and_its_end_of_turn_only():
    tok = chat_tokenizer()
    prompt = (Message("user", "Hello there"), Message("assistant", "I am fine."), Message("user", "A joke?"))
    ids, mask, start = encode_conversation(tok, prompt, "Cats nap.")
    eos = tok.eos_token_id
    trained = [i for i, m in zip(ids, mask) if m]
    # both answers, each with its <|im_end|>, and nothing of the system/user turns or role headers
    assert tok.decode(trained, skip_special_tokens=True) == "I am fine.Cats nap."
    assert trained.count(eos) == 2 and ids[-1] == eos and mask[-1] == 1
    assert tok.decode(ids[start:], skip_special_tokens=True) == "Cats nap."
    batch = sft_batch(tok, [Demonstration(prompt, "Cats nap.")], 512)
    assert batch.loss_mask[0].tolist() == mask and batch.attention_mask.sum() == len(ids)


def test_a_long_conversation_keeps_the_end_of_its_prompt_and_the_start_of_its_answer():
    tok = chat_tokenizer()
    long = "Hello there how are you today " * 20
    ids, mask, start = encode_conversation(tok, long, "It is four.")
    (cut,) = sft_batch(tok, [Demonstration(long, "It is four.")], 40).input_ids.tolist()
    kept = len(ids) - start  # the answer fits: kept whole, the prompt loses its start
    assert len(cut) == 40 and cut[-kept:] == ids[start:] and cut[: 40 - kept] == ids[start - (40 - kept): start]


def test_a_turn_end_token_that_is_not_eos_becomes_eos():
    tok = chat_tokenizer(EOT_STYLE, eos="<|im_end|>")
    assert end_of_turn_token(tok) == "<|eot|>"
    fit_end_of_turn(tok)
    assert tok.eos_token == "<|eot|>"
    (ids, _), = encode_pairs(tok, ["Hi"], ["Hello"], 64)
    assert ids[-1] == tok.convert_tokens_to_ids("<|eot|>")
    assert end_of_turn_token(train_tokenizer(TEXTS, 400)) is None  # no template, nothing to repair


@pytest.mark.parametrize("template, why", [
    # assistant turns rendered as nothing: the turn adds no tokens
    ("{% for m in messages %}{% if m['role'] != 'assistant' %}{{ m['content'] + '<|im_end|>' }}{% endif %}"
     "{% endfor %}", "empty"),
    # only assistant turns rendered: the whole sequence would be trained on
    ("{% for m in messages %}{% if m['role'] == 'assistant' %}{{ m['content'] + '<|im_end|>' }}{% endif %}"
     "{% endfor %}", "whole sequence"),
])
def test_a_mask_that_is_empty_or_everything_is_refused(template, why):
    tok = chat_tokenizer(template)
    with pytest.raises(MaskError, match=why) as e:
        encode_conversation(tok, "Hello there", "I am fine.", index=3)
    assert e.value.index == 3


def test_sft_names_the_file_and_line_of_a_conversation_whose_mask_is_empty(tmp_path):
    from rlhfkit.algos.sft import encode_checked
    from rlhfkit.errors import UserError

    tok = chat_tokenizer("{% for m in messages %}{% if m['role'] != 'assistant' %}{{ m['content'] }}"
                         "{% endif %}{% endfor %}")
    data = tmp_path / "demos.jsonl"
    data.write_text('{"prompt": "Hi", "response": "Hello"}\n\n'
                    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}\n')
    from rlhfkit.feedback.formats import read_records

    demos = read_records(data)
    with pytest.raises(UserError, match=r"demos.jsonl:1: field 'messages'|demos.jsonl:1:.*empty"):
        encode_checked(tok, demos, 64, str(data))


def test_sampling_a_chat_model_stops_at_end_of_turn_and_decodes_without_it():
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlhfkit.lm.sampling import generate

    tok = chat_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    word = tok(" fine", add_special_tokens=False)["input_ids"][0]
    calls = []

    def force(_m, _a, out):  # two forward passes pick " fine", the third <|im_end|>
        out = torch.full_like(out, -50.0)
        out[..., word if len(calls) < 2 else tok.eos_token_id] = 50.0
        calls.append(1)
        return out

    model.lm_head.register_forward_hook(force)
    for engine in ("lean", "hf"):
        calls.clear()
        out = generate(model, tok, ["Hello there"], max_new_tokens=8, greedy=True, engine=engine)
        assert out.responses == (tok.decode([word, word]),)
        assert out.response_mask.sum().item() == 3  # " fine", " fine", <|im_end|>, then it stopped
        assert out.ids[0, out.prompt_len + 2].item() == tok.eos_token_id
