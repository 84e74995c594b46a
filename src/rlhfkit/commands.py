"""The language-model pipeline's commands."""

from __future__ import annotations

from rlhfkit.cli import Command, Flag


def _pretrain(cfg):  # imports stay lazy so `rlhfkit --help` is fast
    from rlhfkit.algos.pretrain import run
    return run(cfg)


def _sft(cfg):
    from rlhfkit.algos.sft import run
    return run(cfg)


def _rm(cfg):
    from rlhfkit.algos.reward_model import run
    return run(cfg)


def _sample(cfg):
    from rlhfkit.lm.sampling import run_sample
    return run_sample(cfg)


def _label_sim(cfg):
    from rlhfkit.feedback.simulate import run_label_sim
    return run_label_sim(cfg)


def _configs():
    from rlhfkit.algos.pretrain import PretrainConfig
    from rlhfkit.algos.reward_model import RMConfig
    from rlhfkit.algos.sft import SFTConfig
    from rlhfkit.feedback.simulate import LabelSimConfig
    from rlhfkit.lm.sampling import SampleConfig
    return PretrainConfig, SFTConfig, SampleConfig, LabelSimConfig, RMConfig


PretrainConfig, SFTConfig, SampleConfig, LabelSimConfig, RMConfig = _configs()

COMMANDS: list[Command] = [
    Command("pretrain", "pretrain a language model on a corpus (default: build a tiny GPT on the embedded corpus)",
            _pretrain, PretrainConfig, (
                Flag("--model", "model.path", "continue training this HF causal LM folder"),
                Flag("--data", "data", "corpus file (.txt lines or .jsonl with 'text')"),
            )),
    Command("sft", "supervised fine-tuning on demonstrations (loss on response tokens)", _sft, SFTConfig, (
        Flag("--model", "model", "policy folder to fine-tune"),
        Flag("--data", "data", "demonstrations file (default: the embedded task's)"),
    )),
    Command("sample", "sample K responses per prompt from a policy, to JSONL", _sample, SampleConfig, (
        Flag("--policy", "policy", "policy folder"),
        Flag("--model", "policy", "same as --policy"),
        Flag("--prompts", "prompts", "prompts file (.txt or .jsonl); default: embedded task prompts"),
        Flag("--k", "k", "responses per prompt", type=int),
        Flag("--n-prompts", "n_prompts", "embedded prompts to draw", type=int),
        Flag("--output", "output", "JSONL to write"),
    )),
    Command("label-sim", "simulated labelers rank, compare or rate sampled responses", _label_sim, LabelSimConfig, (
        Flag("--samples", "samples", "completions JSONL from `rlhfkit sample`"),
        Flag("--kind", "kind", "ranking, pairwise or rating", choices=("ranking", "pairwise", "rating")),
        Flag("--output", "output", "labels JSONL to write"),
    )),
    Command("rm", "train a reward model on comparisons, rankings or ratings", _rm, RMConfig, (
        Flag("--model", "model", "backbone folder (the SFT policy, or any HF causal LM)"),
        Flag("--data", "data", "judgments file (any supported format)"),
        Flag("--objective", "objective", "bradley_terry or ratings", choices=("bradley_terry", "ratings")),
    )),
]
