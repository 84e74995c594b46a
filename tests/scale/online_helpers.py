"""What the online-trainer tests share: a reward model on the micro LM, and how to run
rlhfkit commands in a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Runs the commands given as "argv|argv|..." one after the other in one process (one start-up).
SEQUENCE = "import sys; from rlhfkit.cli import main; [sys.exit(1) for a in sys.argv[1].split('|') if main(a.split())]"


def child_env() -> dict[str, str]:
    """The environment of a child rlhfkit process: one thread, no progress bars, no hub, this
    checkout's sources first."""
    return dict(os.environ, OMP_NUM_THREADS="1", RLHFKIT_PROGRESS="0", HF_HUB_OFFLINE="1",
                PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))


def make_reward_dir(micro_lm: Path, out: Path) -> Path:
    """An untrained scalar head on the micro LM (seeded), saved in `out`: a fixed, arbitrary
    reward is enough to check devices, resume, DDP and LoRA."""
    from rlhfkit.lm.models import reward_model_from
    from rlhfkit.runtime import seed_everything

    seed_everything(1)
    model, tok = reward_model_from(micro_lm)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def kill_when(argv: list[str], ready: Path, timeout: float, too_early: str, too_slow: str) -> None:
    """Run `rlhfkit argv` in a child process and SIGKILL it as soon as the file `ready` exists.
    Fails with `too_early` (and the child's stderr) if it ends first, `too_slow` after `timeout` s."""
    proc = subprocess.Popen([sys.executable, "-m", "rlhfkit.cli", *argv], env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise AssertionError(f"{too_early}: {proc.stderr.read()[-3000:]!r}")
        assert time.time() < deadline, too_slow
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
