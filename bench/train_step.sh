#!/bin/sh
# Training throughput of the JIT (`nnc MODEL --train --max-steps N`): per model, the wall time of
# a cold run (an empty object cache: the LLVM compile of every program, then the steps and the
# final evaluation) and the samples/s nnc reports for the steps of a warm run (cached objects).
#
#   bench/train_step.sh [nnc binary] [steps] [models...]     run from the source root
#
# Defaults: build/nnc, 20 steps, char_rnn fashion_mlp fashion_cnn; THREADS=N passes --threads N
# (on a shared machine one thread is the steadier figure: a parallel loop waits for its slowest
# worker, so another process on either core slows every loop). The load average is printed with
# each line: figures are only comparable at similar load.
set -eu
nnc=${1:-build/nnc}
steps=${2:-20}
shift $(($# > 2 ? 2 : $#))
models=${*:-char_rnn fashion_mlp fashion_cnn}
threads=${THREADS:+--threads $THREADS}
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT

load() { cut -d' ' -f1 /proc/loadavg; }
now() { date +%s.%N; }

printf '%-12s %10s %12s %8s\n' model cold_s samples/s load
for m in $models; do
  rm -rf "${cache:?}/$m"
  start=$(now)
  NNC_CACHE_DIR="$cache/$m" "$nnc" "models/$m.nn" --train --max-steps 2 $threads > "$cache/$m.cold.log" 2>&1
  cold=$(echo "$(now) - $start" | bc)
  NNC_CACHE_DIR="$cache/$m" "$nnc" "models/$m.nn" --train --max-steps "$steps" $threads > "$cache/$m.warm.log" 2>&1
  rate=$(sed -n 's/.*trained after [0-9]* steps in [0-9:]* (\([0-9.]*\) samples\/s).*/\1/p' "$cache/$m.warm.log")
  printf '%-12s %10.1f %12s %8s\n' "$m" "$cold" "${rate:-?}" "$(load)"
done
