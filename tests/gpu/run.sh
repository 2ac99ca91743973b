#!/bin/sh
# The CUDA checks on a machine with a GPU (docs/cuda.md, "Running on a GPU"):
#   tests/gpu/run.sh [BUILD_DIR]
# builds nnc without the LLVM backend, lists the devices, then runs the CUDA tests. With a GPU:
# every model's programs (predict, eval_step, 2 train_steps) on the device against the
# interpreter (backend_phase --cuda), every model of models/ trained 20 steps with --target cuda
# (resident: graphs, pinned copies, losses read at intervals) on small random data of its kind,
# its checkpoint resumed for one more step on the CPU (the same file format), one epoch of
# fashion_cnn with --target cuda and its samples/s, and PyTorch's samples/s for the same model on
# the same GPU when torch imports.
# Without one: every kernel through NVRTC and ptxas (cuda_compile), the CUDA lit tests (the
# --emit ptx launcher builds and says "no CUDA driver"), and --target cuda's refusal; exit 0
# (a dry run). A failed check exits 1. Prints a summary either way. Meant to finish within 5
# minutes on one H200 (the build is most of it).
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
   ! cmake --build "$build" -j"$jobs" --target nnc cuda_compile cuda_exec_fake backend_phase >/dev/null; then
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
if [ $gpu = no ]; then
  # with a GPU the device checks below compile every kernel for it through NVRTC anyway
  run_check cuda_compile "sh" "-c" "cd '$root' && '$build/tests/cuda_compile'"
fi
# the executor's stream, graphs and residency against the fake driver (needs no GPU)
run_check cuda_exec_fake "sh" "-c" "cd '$root' && '$build/tests/cuda_exec_fake'"
lit=/usr/lib/llvm-19/build/utils/lit/lit.py
if [ -f "$lit" ] && [ -x /usr/lib/llvm-19/bin/FileCheck ]; then
  run_check lit_cuda python3 "$lit" -q --param nnc="$nnc" --param source_root="$root" "$root/tests/lit/cuda"
else
  skipped=$((skipped + 1)); note "skip  lit_cuda (no lit or FileCheck under /usr/lib/llvm-19)"
fi
if [ $gpu = yes ]; then
  # every model's programs on the device against the interpreter
  run_check backend_cuda "sh" "-c" "cd '$root' && '$build/tests/backend_phase' --cuda"
  # every model trains on the device (20 steps, small random data of its kind; lenet's warmup of
  # 200 steps needs 4096 images), and the CPU resumes its checkpoint for one more step
  small="$build/gpu-small"
  mkdir -p "$small"
  python3 "$root/tests/gpu/random_idx.py" "$small/idx" 4096 256
  python3 - "$small/cifar" <<'PY'
import os, random, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True); rng = random.Random(1)
for name, n in [("data_batch_%d.bin" % i, 256) for i in range(1, 6)] + [("test_batch.bin", 128)]:
    with open(os.path.join(d, name), "wb") as f:
        f.write(b"".join(bytes([rng.randrange(10)]) + rng.randbytes(3072) for _ in range(n)))
PY
  cat "$root"/docs/*.md | head -c 20000 >"$small/text.txt"
  for model_file in "$root"/models/*.nn; do
    model=$(basename "$model_file" .nn)
    case $(sed -n 's/^ *data = \([a-z_0-9]*\)(.*/\1/p' "$model_file") in
      fashion_mnist|mnist) data="--data $small/idx" ;;
      cifar10) data="--data $small/cifar" ;;
      text) data="--data $small/text.txt" ;;
      *) data="" ;;
    esac
    ckpt="$build/gpu-$model.safetensors"
    run_check "train_cuda_$model" sh -c "'$nnc' '$model_file' --train --target cuda --max-steps 20 $data \
      --save '$ckpt' && '$nnc' '$model_file' --train --target interp --resume '$ckpt' --max-steps 21 $data"
  done
  # one epoch of fashion_cnn on the device: Fashion-MNIST when it is there, else random images
  # of its shape (the samples/s is what counts here)
  data=/usr/share/datasets/fashion-mnist
  if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
    data="$build/gpu-fashion-random"
    python3 "$root/tests/gpu/random_idx.py" "$data" 60000 10000
  fi
  run_check train_fashion_cnn "$nnc" "$root/models/fashion_cnn.nn" --train --target cuda --epochs 1 --data "$data"
  nnc_rate=$(sed -n 's/.*(\([0-9]*\) samples\/s).*/\1/p' "$build/gpu-train_fashion_cnn.log" | tail -n 1)
  echo "nnc fashion_cnn: ${nnc_rate:-?} samples/s (--target cuda, one epoch)"
  note "      nnc fashion_cnn: ${nnc_rate:-?} samples/s"
  python3 "$root/tests/gpu/torch_fashion_cnn.py" "$data" >"$build/gpu-torch.log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then note "      $(tail -n 1 "$build/gpu-torch.log")"; cat "$build/gpu-torch.log"
  else note "      no PyTorch comparison ($(tail -n 1 "$build/gpu-torch.log"))"
  fi
else
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
