#!/bin/sh
# The CUDA checks on a machine with a GPU (docs/cuda.md, "Running on a GPU"):
#   tests/gpu/run.sh [BUILD_DIR]
# builds nnc without the LLVM backend, lists the devices, then runs the CUDA tests: every
# kernel through NVRTC for the device's architecture and ptxas (cuda_compile), the CUDA lit
# tests, and --target cuda on each model. Without a GPU it says so, runs the checks that need
# none, and exits 0 (a dry run); a failed check exits 1. Prints a summary either way.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build-gpu-run}
jobs=$(nproc 2>/dev/null || echo 2)
passed=0 failed=0 skipped=0
summary=""

note() { summary="$summary
  $1"; }
run_check() { # NAME COMMAND...: a check passes when the command exits 0; 77 means skipped
  name=$1; shift
  log="$build/gpu-$name.log"
  "$@" >"$log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then passed=$((passed + 1)); note "pass  $name"
  elif [ $rc -eq 77 ]; then skipped=$((skipped + 1)); note "skip  $name ($(tail -n 1 "$log"))"
  else failed=$((failed + 1)); note "FAIL  $name (exit $rc, log: $log)"; tail -n 20 "$log"
  fi
}

echo "== build ($build, NNC_WITH_LLVM=OFF)"
if ! cmake -S "$root" -B "$build" -DNNC_WITH_LLVM=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null ||
   ! cmake --build "$build" -j"$jobs" --target nnc cuda_compile >/dev/null; then
  echo "tests/gpu/run.sh: the build failed"
  exit 1
fi
nnc=$build/nnc

echo "== devices"
"$nnc" --devices | tee "$build/gpu-devices.txt"
if grep -q '^  device 0:' "$build/gpu-devices.txt"; then
  gpu=yes
  arch=$(sed -n 's/.*(sm_\([0-9]*\)).*/sm_\1/p' "$build/gpu-devices.txt" | head -n 1)
  echo "GPU found: kernels compile for $arch"
else
  gpu=no
  echo "no GPU: $(sed -n 's/^cuda: //p' "$build/gpu-devices.txt") -- dry run: only the checks that need no device"
fi

echo "== checks"
run_check cuda_compile "sh" "-c" "cd '$root' && '$build/tests/cuda_compile'"
lit=/usr/lib/llvm-19/build/utils/lit/lit.py
if [ -f "$lit" ]; then
  run_check lit_cuda python3 "$lit" -q --param nnc="$nnc" --param source_root="$root" "$root/tests/lit/cuda"
else
  skipped=$((skipped + 1)); note "skip  lit_cuda (no lit at $lit)"
fi
for model in "$root"/models/*.nn; do
  name=$(basename "$model" .nn)
  if [ $gpu = yes ]; then
    # training on the device against the interpreter: --target cuda runs the programs there
    run_check "target_cuda_$name" "$nnc" "$model" --train --max-steps 5 --quiet --target cuda
  fi
done
if [ $gpu = no ]; then
  # without a device, --target cuda must refuse with one line and exit status 3
  "$nnc" "$root/models/xor_mlp.nn" --train --target cuda >/dev/null 2>"$build/gpu-target.txt"
  rc=$?
  if [ $rc -eq 3 ] && [ "$(wc -l <"$build/gpu-target.txt")" -eq 1 ]; then
    passed=$((passed + 1)); note "pass  target_cuda_refused ($(cat "$build/gpu-target.txt"))"
  else
    failed=$((failed + 1)); note "FAIL  target_cuda_refused (exit $rc)"
  fi
fi

echo "== summary (GPU: $gpu)$summary"
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
