#!/usr/bin/env bash
# GPU check (issue 14): the real-model pipeline, rlhfkit's MFU and the TRL comparison on one NVIDIA
# GPU (sized for an H200: about 10 minutes in all). Run from the repository root, in the environment
# rlhfkit is installed in (nothing is downloaded; rlhfkit is installed from this checkout with
# `pip install --no-index -e .` only if it is not importable):
#
#     OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh
#
# Steps, each under its own `timeout` (seconds; override with the variables below):
#   1. nvidia-smi, and torch must see CUDA (else stop);
#   2. benchmarks/gpu_mfu.py: tokens/s and MFU (against the H200's 989 TFLOP/s dense bf16 peak) of
#      rlhfkit's reward-model, DPO and GRPO steps on SmolLM2-135M-Instruct, bf16, 32 x 512 tokens;
#      converts the GGUF once into $OUT/assets/smollm2, which step 3 reuses;             (T_MFU)
#   3. benchmarks/vs_trl.py --model smollm2 --device cuda: rlhfkit against TRL (rm and DPO, full and
#      LoRA; GRPO), workers on CUDA in bf16; needs TRL (the Python in $TRL_PYTHON, else
#      /tmp/trl-venv/bin/python, else this Python if it imports trl; skipped otherwise); (T_VS)
#   4. benchmarks/real_model.py on CUDA in bf16 at the GPU scale (the one marked line). (T_REAL)
# Everything is tee'd to $OUT/gpu_check.log (and each step to $OUT/<step>.log); a summary of each
# step's exit status, time and RESULT line ends the log; the exit status is the number of steps
# that failed or timed out. The short steps run first, so that the long pipeline reaching its
# limit costs nothing else.

set -uo pipefail
OUT=${OUT:-/tmp/rlhfkit-gpu-check}
PY=${PYTHON:-python}
T_MFU=${T_MFU:-120}
T_VS=${T_VS:-170}
T_REAL=${T_REAL:-280}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export RLHFKIT_PROGRESS=0 PYTHONUNBUFFERED=1
START=$(date +%s)
SUMMARY=()
FAILED=0

run_step() {  # run_step NAME SECONDS COMMAND...: its output to the log and $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo
    echo "=== $name (timeout ${limit}s): $*"
    local t0=$(date +%s)
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    local dt=$(( $(date +%s) - t0 ))
    local status="ok"
    [ "$rc" -ne 0 ] && status="FAILED (exit $rc)" && FAILED=$((FAILED + 1))
    { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && status="TIMED OUT after ${limit}s"
    local result
    result=$(grep -h '^RESULT' "$OUT/$name.log" | tail -1)
    SUMMARY+=("$name: $status, ${dt}s${result:+; $result}")
}

echo "=== GPU check, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), out $OUT"
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi; then
    echo "no NVIDIA GPU here (nvidia-smi missing or failing): nothing to check"
    exit 1
fi
if ! "$PY" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name()); sys.exit(not torch.cuda.is_available())"; then
    echo "torch does not see CUDA in $PY: install a CUDA build of torch first"
    exit 1
fi
if ! "$PY" -c "import rlhfkit" 2>/dev/null; then
    echo "rlhfkit not importable: installing this checkout from local disk"
    "$PY" -m pip install --no-index --no-deps --no-build-isolation -e . || exit 1
fi

# 2. MFU of rlhfkit's steps (also converts SmolLM2 once, into $OUT/assets/smollm2)
run_step gpu_mfu "$T_MFU" "$PY" benchmarks/gpu_mfu.py --device cuda --dtype bf16 --batch 32 --seq 512 \
    --assets "$OUT/assets"

# 3. rlhfkit vs TRL on SmolLM2, workers on CUDA in bf16
TRL_PY=${TRL_PYTHON:-}
if [ -z "$TRL_PY" ]; then
    if [ -x /tmp/trl-venv/bin/python ] && /tmp/trl-venv/bin/python -c "import trl" 2>/dev/null; then
        TRL_PY=/tmp/trl-venv/bin/python
    elif "$PY" -c "import trl" 2>/dev/null; then
        TRL_PY=$PY
    fi
fi
if [ -n "$TRL_PY" ]; then
    run_step vs_trl "$T_VS" "$TRL_PY" benchmarks/vs_trl.py --model smollm2 --device cuda \
        --assets "$OUT/assets" --out "$OUT/vs_trl_smollm2.json"
else
    echo "=== vs_trl: skipped (no Python with trl here; set TRL_PYTHON, see benchmarks/vs_trl.py)"
    SUMMARY+=("vs_trl: skipped, no trl")
fi

# 4. the real-model pipeline. >>> THE REAL-MODEL CALL: adjust this one line <<<
REAL_CMD=("$PY" benchmarks/real_model.py --device cuda --dtype bf16 --eval-prompts 300 --scale gpu --out "$OUT/real")
run_step real_model "$T_REAL" "${REAL_CMD[@]}"

echo
echo "=== summary ($(( $(date +%s) - START ))s in all; log $LOG)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for line in "${SUMMARY[@]}"; do
    echo "  $line"
done
exit "$FAILED"
