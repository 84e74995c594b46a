"""RLHFKIT_PROGRESS=0 silences the libraries' progress bars too, not only rlhfkit's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

LOAD = "from rlhfkit.lm.models import load_policy; import sys; load_policy(sys.argv[1])"


@pytest.mark.parametrize("setting, bar_shown", [("0", False), ("1", True)])
def test_loading_a_model_shows_transformers_bar_only_when_progress_is_on(tiny_lm, setting, bar_shown):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")}
    env["RLHFKIT_PROGRESS"] = setting
    out = subprocess.run([sys.executable, "-c", LOAD, str(tiny_lm)], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert ("Loading weights" in out.stderr) is bar_shown
