#!/usr/bin/env bash
# herd's GPU checks in one go, for a machine with one CUDA GPU (CI has none):
#   1. the training benchmark: a ~1B model in bf16, MFU and the ratio to transformers (docs/pretrain.md);
#   2. the CUDA tests: tests/infer/test_infer_cuda.py and tests/train/test_train_cuda.py;
#   3. the decode benchmark at batch 1 and 8 on SmolLM2-135M's shape (docs/inference.md).
# Each part has a time limit, so one that hangs does not take the others with it. On an H200 the
# whole script takes about 13 minutes, most of it compiling the decode configurations (30-60 s each).
#
#   bench/gpu_checks.sh [LOG_DIR]        (default runs/gpu-checks; one log file per part)
#
# Without herd installed, run it from the repository with PYTHONPATH=src.
set -u
log=${1:-runs/gpu-checks}
py=${PYTHON:-python3}
mkdir -p "$log"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$log/gpu.txt"
$py -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' \
    | tee -a "$log/gpu.txt"

timeout 170 $py -P bench/train.py --model 1b --seq-len 2048 --batch 8 --steps 10 --warmup 3 --compile \
    >"$log/train.txt" 2>&1
tail -6 "$log/train.txt"

timeout 200 $py -m pytest -q -n 4 -p no:cacheprovider tests/infer/test_infer_cuda.py tests/train/test_train_cuda.py \
    >"$log/pytest.txt" 2>&1
grep -E "^(FAILED|ERROR)|passed|failed" "$log/pytest.txt" | tail -25

timeout 330 $py -P bench/decode.py --model smollm2-135m --batch 1 \
    --configs fp32,fp32+compile,bf16+compile,int8+compile,int4+compile >"$log/decode1.txt" 2>&1
tail -12 "$log/decode1.txt"
timeout 200 $py -P bench/decode.py --model smollm2-135m --batch 8 --configs fp32,fp32+compile,int8+compile \
    >"$log/decode8.txt" 2>&1
tail -8 "$log/decode8.txt"
