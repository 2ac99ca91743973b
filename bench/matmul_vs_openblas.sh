#!/bin/sh
# The loop IR sgemm through the C printer (bench_loop_matmul, gcc and clang) against OpenBLAS's
# sgemm (its Haswell kernels, one thread, through numpy) on the same shapes, with ratios.
#
#   bench/matmul_vs_openblas.sh [build dir] [repeats]     run from the source root
#
# OpenBLAS: numpy loads libblas.so.3; OPENBLAS_LIB_DIR (default: the system's openblas-pthread
# directory) puts OpenBLAS's libblas.so.3 first. Without OpenBLAS installed:
#   apt-get download libopenblas0-pthread && dpkg -x libopenblas0-pthread_*.deb /tmp/ob
#   OPENBLAS_LIB_DIR=/tmp/ob/usr/lib/x86_64-linux-gnu/openblas-pthread bench/matmul_vs_openblas.sh
# Rates are in thread CPU time, so other work on a busy machine does not count against either.
set -eu
build=${1:-build}
repeats=${2:-5}
py=${PYTHON:-/usr/bin/python3}
libdir=${OPENBLAS_LIB_DIR:-/usr/lib/x86_64-linux-gnu/openblas-pthread}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for cc in gcc clang; do
  if command -v "$cc" > /dev/null 2>&1; then
    CC=$cc "$build/bench_loop_matmul" "$repeats" | tee "$out/$cc.txt"
  fi
done

echo "OpenBLAS sgemm via numpy, OPENBLAS_CORETYPE=Haswell, 1 thread ($libdir)"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" OPENBLAS_CORETYPE=Haswell OPENBLAS_NUM_THREADS=1 \
  OMP_NUM_THREADS=1 "$py" - "$repeats" << 'PY' | tee "$out/openblas.txt"
import sys, time
import numpy as np
repeats = int(sys.argv[1])
for M, N, K in [(1024, 1024, 1024), (64, 256, 784), (256, 784, 64)]:
    a = (np.arange(M * K, dtype=np.float32) % 13 * 0.01).reshape(M, K)
    b = (np.arange(K * N, dtype=np.float32) % 7 * 0.01).reshape(K, N)
    c = np.empty((M, N), dtype=np.float32)
    np.matmul(a, b, out=c)
    best = wall = 1e30
    for _ in range(repeats):
        t0, w0, calls = time.thread_time(), time.perf_counter(), 0
        while True:
            np.matmul(a, b, out=c)
            calls += 1
            if time.thread_time() - t0 >= 0.05:
                break
        best = min(best, (time.thread_time() - t0) / calls)
        wall = min(wall, (time.perf_counter() - w0) / calls)
    f = 2.0 * M * N * K
    print("%5d x %5d x %5d  %8.3f ms  %7.1f GFLOP/s  (wall %7.1f)" % (M, N, K, best * 1e3, f / best * 1e-9, f / wall * 1e-9))
PY
if ! LD_LIBRARY_PATH="$libdir" "$py" -c "import ctypes, sys; ctypes.CDLL('libblas.so.3').openblas_get_config" 2> /dev/null; then
  echo "warning: libblas.so.3 there is not OpenBLAS: the reference figures are some other BLAS"
fi

echo "ratio to OpenBLAS (CPU-time GFLOP/s)"
# rows: M x N x K  <ms> ms  <GFLOP/s> GFLOP/s  (wall <GFLOP/s>)
for cc in gcc clang; do
  [ -f "$out/$cc.txt" ] || continue
  grep GFLOP "$out/$cc.txt" > "$out/$cc.rows"
  grep GFLOP "$out/openblas.txt" > "$out/ob.rows"
  paste -d ' ' "$out/$cc.rows" "$out/ob.rows" | awk -v cc="$cc" '{
    ours = $8; ref = $(NF - 3);
    printf "%-6s %5s x %5s x %5s  %6.1f / %6.1f = %4.0f%%\n", cc, $1, $3, $5, ours, ref, 100 * ours / ref }'
done
