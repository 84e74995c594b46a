"""feedback/labelers.py with conversational prompts: labels keep the messages, the gold scorer
reads the transcript."""

from rlhfkit.feedback.labelers import (
    LabelerPool,
    agreement_with_gold,
    inter_labeler_agreement,
)
from rlhfkit.feedback.records import Completions, prompt_text

CONVO = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
         {"role": "user", "content": "Longer please?"}]


def test_simulated_labels_keep_a_conversation_and_gold_reads_its_text():
    items = [Completions(CONVO, ["a", "a b c d", "a b"]), Completions("plain", ["x y", "x"])]
    seen: list[str] = []

    def gold(prompt: str, response: str) -> float:
        seen.append(prompt)
        return float(len(response))

    pool = LabelerPool(seed=0)
    for labels in (pool.rank_all(items, gold), pool.compare_all(items, gold), pool.rate_all(items, gold)):
        assert [r.prompt for r in labels[:1]] == [items[0].prompt] and labels[-1].prompt == "plain"
    assert set(seen) == {prompt_text(items[0].prompt), "plain"}
    assert prompt_text(items[0].prompt).endswith("\n\nHuman: Longer please?\n\nAssistant:")
    pairs = pool.compare_all(items, gold)
    assert set(agreement_with_gold(pairs, gold)) <= {lab.name for lab in pool.labelers}
    assert inter_labeler_agreement({"a": pairs, "b": pairs}) == {"a|b": 1.0}
