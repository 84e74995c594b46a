"""rlhfkit: learning from human feedback, end to end."""

import os as _os

__version__ = "0.1.0"

if _os.environ.get("RLHFKIT_PROGRESS") == "0":
    # No bars means none from the libraries either: transformers' "Loading weights" (through
    # huggingface_hub's switch) and its GGUF "de-quantizing" bar (plain tqdm, which reads TQDM_*).
    _os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _os.environ.setdefault("TQDM_DISABLE", "1")
