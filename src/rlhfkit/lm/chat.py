"""Chat templates: how a chat model reads a prompt, and which tokens of a conversation are its own.

A tokenizer with a chat template (any chat model: SmolLM2's ChatML, Llama's, ...) renders every
prompt through it: a plain prompt is one user turn, a conversational prompt its messages, and the
template's generation prompt (`<|im_start|>assistant\\n` in ChatML) ends it. Responses are then
sampled, scored and trained exactly where the model expects its answer, in sft, rm, dpo, the online
trainers, sampling, evaluation and best-of-n alike (they all tokenize through `lm/data.py` and
`lm/sampling.py`, which call this module). An answer ends with the template's end-of-turn token;
`fit_end_of_turn` makes that token the tokenizer's EOS, so generation stops there and responses
are decoded without it. A tokenizer without a template (the tiny GPT) reads a plain prompt as it
is, and a conversation as an HH-style transcript (`feedback.records.prompt_text`).

The SFT loss of a conversation covers its assistant turns only. They are found by rendering the
conversation with and without each assistant turn and taking the tokens the turn adds, not by
asking the template for `{% generation %}` markers, which most templates lack (TRL issues #4147,
#4879).
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from rlhfkit.errors import UserError
from rlhfkit.feedback.records import Prompt, as_messages, prompt_text
from rlhfkit.logging import get_logger

log = get_logger(__name__)

_PROBE = "Probe answer 7"  # an assistant turn's text, to find what the template writes after it


class MaskError(UserError):
    """A conversation whose loss mask cannot be built; `index` is the record's position."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def has_template(tok: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tok, "chat_template", None))


def _render(tok: PreTrainedTokenizerBase, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tok.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)


def _ids(tok: PreTrainedTokenizerBase, text: str) -> list[int]:
    # the rendered text already holds the template's special tokens (BOS among them, where it has one)
    return tok(text, add_special_tokens=False)["input_ids"]


def render_prompt(tok: PreTrainedTokenizerBase, prompt: Prompt) -> str:
    """The text the model reads before its answer."""
    if not has_template(tok):
        return prompt_text(prompt)
    return _render(tok, as_messages(prompt), generation_prompt=True)


def render_prompts(tok: PreTrainedTokenizerBase, prompts: Sequence[Prompt]) -> list[str]:
    return [render_prompt(tok, p) for p in prompts]


def response_text(tok: PreTrainedTokenizerBase, prompt: Prompt, response: str) -> str:
    """The answer as the model writes it after `render_prompt`. Without a template a conversation's
    transcript ends in "Assistant:", which the answer follows after a space."""
    if not has_template(tok) and not isinstance(prompt, str) and response[:1] not in (" ", "\n"):
        return " " + response
    return response


def end_of_turn_token(tok: PreTrainedTokenizerBase) -> str | None:
    """The special token the template closes an assistant turn with (None without a template, or
    when the template writes no special token there)."""
    if not has_template(tok):
        return None
    try:
        text = _render(tok, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _PROBE}], False)
    except Exception as e:  # a template may refuse a probe conversation; then there is nothing to repair  # noqa: BLE001
        log.debug("chat template refused the end-of-turn probe: %s", e)
        return None
    at = text.rfind(_PROBE)
    tail = _ids(tok, text[at + len(_PROBE):]) if at >= 0 else []
    token = tok.convert_ids_to_tokens(tail[0]) if tail else None
    return token if token in special_tokens(tok) else None


def special_tokens(tok: PreTrainedTokenizerBase) -> set[str]:
    """The tokenizer's special tokens: its named ones and every added token marked special."""
    added = getattr(tok, "added_tokens_decoder", {}).values()
    return set(tok.all_special_tokens) | {t.content for t in added if getattr(t, "special", False)}


def fit_end_of_turn(tok: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Make the template's end-of-turn token the EOS (Llama 3's `<|eot_id|>`, Gemma's
    `<end_of_turn>`, ...): every response then ends, stops and is masked where the template ends
    an assistant turn. Where EOS already is that token (SmolLM2's `<|im_end|>`) nothing changes."""
    eot = end_of_turn_token(tok)
    if eot is not None and eot != tok.eos_token:
        log.info("chat template ends an assistant turn with %s, not EOS %s: responses end with %s",
                 eot, tok.eos_token, eot)
        tok.eos_token = eot
    return tok


def encode_conversation(tok: PreTrainedTokenizerBase, prompt: Prompt, response: str, index: int = 0
                        ) -> tuple[list[int], list[int], int]:
    """(ids, loss mask, start of the final answer) of `prompt` followed by the answer `response`.

    The mask is 1 on every assistant turn's tokens, its end-of-turn token included (the model
    learns to stop), and on nothing else. `index` names the record in errors."""
    eos = tok.eos_token_id
    if not has_template(tok):
        p = _ids(tok, render_prompt(tok, prompt))
        r = _ids(tok, response_text(tok, prompt, response)) + [eos]
        return p + r, [0] * len(p) + [1] * len(r), len(p)
    msgs = as_messages(prompt) + [{"role": "assistant", "content": response}]
    full = _ids(tok, _render(tok, msgs, False))
    mask = [0] * len(full)
    start = end = 0
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before = _ids(tok, _render(tok, msgs[:i], True)) if i else []
        through = _ids(tok, _render(tok, msgs[: i + 1], False))
        if full[: len(before)] != before or full[: len(through)] != through:
            raise MaskError(index, "the chat template renders this conversation so that a shorter part of it is "
                                   "not a prefix of the whole; its assistant turns cannot be located")
        start, end = len(before), _turn_end(through, len(before), eos)
        mask[start:end] = [1] * (end - start)
    full, mask = full[:end], mask[:end]  # what the template writes after the final turn is not the answer's
    _check_mask(mask, index)
    return full, mask, start


def _turn_end(ids: list[int], start: int, eos: int) -> int:
    """Index after the turn's end-of-turn token (the first EOS from `start` on), or len(ids)."""
    for j in range(start, len(ids)):
        if ids[j] == eos:
            return j + 1
    return len(ids)


def _check_mask(mask: Sequence[int], index: int) -> None:
    if not any(mask):
        raise MaskError(index, "the assistant mask is empty: no token of an assistant turn to train on")
    if all(mask):
        raise MaskError(index, "the assistant mask covers the whole sequence: the chat template wrote no prompt "
                               "tokens around the assistant turn")
