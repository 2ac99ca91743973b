#!/bin/sh
# Every model of models/ through `nnc --train --target cuda` on the fake driver (fake_cuda.c):
#   models_test.sh NNC FAKE_DIR SOURCE_ROOT WORK_DIR
# 3 resident steps each on small random data of its kind (the idx and CIFAR layouts, the docs as
# text), a checkpoint written. The kernels do not run here; what is checked is the host side for
# every model: lowering, NVRTC for sm_90, every program captured with the PTX's parameters, the
# copies, the losses' reads, persist back. 77 without NVRTC or python3.
set -u
nnc=$1 fake=$2 root=$3 work=$4
if "$nnc" --devices | grep -q '^nvrtc: no NVRTC'; then echo "skipped: no NVRTC"; exit 77; fi
command -v python3 >/dev/null || { echo "skipped: no python3"; exit 77; }
mkdir -p "$work"
export NNC_CACHE_DIR="$work/cache"
# lenet's cosine warmup of 200 steps needs more than 40 batches of 64 per epoch
[ -f "$work/idx/train-images-idx3-ubyte.gz" ] || python3 "$root/tests/gpu/random_idx.py" "$work/idx" 4096 64
python3 - "$work/cifar" <<'PY'
import os, random, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True); rng = random.Random(1)
for name, n in [("data_batch_%d.bin" % i, 64) for i in range(1, 6)] + [("test_batch.bin", 64)]:
    with open(os.path.join(d, name), "wb") as f:
        f.write(b"".join(bytes([rng.randrange(10)]) + rng.randbytes(3072) for _ in range(n)))
PY
cat "$root"/docs/*.md | head -c 20000 >"$work/text.txt"
failed=0
for model_file in "$root"/models/*.nn; do
  model=$(basename "$model_file" .nn)
  case $(sed -n 's/^ *data = \([a-z_0-9]*\)(.*/\1/p' "$model_file") in
    fashion_mnist|mnist) data="$work/idx" ;;
    cifar10) data="$work/cifar" ;;
    text) data="$work/text.txt" ;;
    *) data="" ;;
  esac
  rm -f "$work/$model.safetensors"
  if LD_LIBRARY_PATH="$fake" "$nnc" "$model_file" --train --target cuda --max-steps 3 ${data:+--data "$data"} \
       --save "$work/$model.safetensors" >"$work/$model.log" 2>&1 && [ -s "$work/$model.safetensors" ]; then
    echo "ok    $model"
  else
    echo "FAIL  $model: $(tail -n 3 "$work/$model.log")"
    failed=1
  fi
done
exit $failed
