#!/bin/sh
# `nnc --train --target cuda` through the fake driver (fake_cuda.c), as a user runs it:
#   cli_test.sh NNC FAKE_DIR SOURCE_ROOT WORK_DIR
# training writes a checkpoint that the CPU target evaluates, and a driver call that fails
# (FAKE_CUDA_FAIL) stops the run with one line on stderr and exit status 1. 77 without NVRTC.
set -u
nnc=$1 fake=$2 root=$3 work=$4
mkdir -p "$work"
if "$nnc" --devices | grep -q '^nvrtc: no NVRTC'; then echo "skipped: no NVRTC"; exit 77; fi
fail() { echo "cli_test: $*"; exit 1; }
ckpt="$work/xor_cuda.safetensors"
rm -f "$ckpt"
LD_LIBRARY_PATH="$fake" "$nnc" "$root/models/xor_mlp.nn" --train --target cuda --epochs 3 --save "$ckpt" \
  >"$work/train.out" 2>&1 || fail "training through the fake driver failed: $(cat "$work/train.out")"
grep -q '^epoch 3/3  step 3  train loss' "$work/train.out" || fail "no third epoch line: $(cat "$work/train.out")"
"$nnc" "$root/models/xor_mlp.nn" --eval --load "$ckpt" --target interp >"$work/eval.out" 2>&1 ||
  fail "the CPU cannot evaluate the checkpoint: $(cat "$work/eval.out")"
FAKE_CUDA_FAIL=cuGraphLaunch:2:700 LD_LIBRARY_PATH="$fake" "$nnc" "$root/models/xor_mlp.nn" --train --target cuda \
  --epochs 3 >/dev/null 2>"$work/fail.err"
rc=$?
[ $rc -eq 1 ] || fail "a failing cuGraphLaunch exits $rc, not 1"
[ "$(wc -l <"$work/fail.err")" -eq 1 ] || fail "more than one line: $(cat "$work/fail.err")"
grep -qx 'nnc: error: CUDA: cuGraphLaunch failed: CUDA_ERROR_ILLEGAL_ADDRESS (700)' "$work/fail.err" ||
  fail "unexpected message: $(cat "$work/fail.err")"
echo "cli_test: ok"
