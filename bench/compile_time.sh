#!/bin/sh
# Compile time of the JIT (docs/llvm.md, "Compile time"): per model, `nnc MODEL --stats`'s total
# (front end, every pipeline stage, the LLVM IR, cache, optimization, code generation and link)
# with an empty object cache (cold), again with the cache it filled (warm), and for a model
# with a hyperparameter, with one changed (edited: only the kernels it changes are compiled);
# the distinct kernels the JIT compiled cold; and beside them the cold compile of the same
# training step (forward, gradient, Adam) in JAX's jit (bench/compile_peers.py), the peer that
# compiles a whole step. The sequence models also run at 4x their T.
#
#   bench/compile_time.sh [nnc binary]        run from the source root
#
# JAX comes from PyPI into a venv this script makes (bench/.venv; NO_PEERS=1 skips it). The
# load average is printed with each line: figures are only comparable at similar load.
set -eu
nnc=${1:-build/nnc}
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
venv=bench/.venv
if [ -z "${NO_PEERS:-}" ] && [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q jax > "$cache/pip.log" 2>&1 || {
    echo "no JAX (see pip's log below); NO_PEERS=1 runs without it" >&2; cat "$cache/pip.log" >&2; exit 1; }
fi

load() { cut -d' ' -f1 /proc/loadavg; }
total() { sed -n 's/^  total *\([0-9.]*\) s.*/\1/p'; }
kernels() { sed -n 's/.*: \([0-9]*\) kernels, .*/\1/p'; }

# model, extra flags, the edit (a --set) or -
run() {
  m=$1 flags=$2 edit=$3 dir="$cache/$m$(echo "$flags" | tr -dc 0-9)"
  NNC_CACHE_DIR=$dir "$nnc" "models/$m.nn" $flags --stats > "$dir.cold" 2>&1 || { echo "$m: failed" >&2; cat "$dir.cold" >&2; exit 1; }
  NNC_CACHE_DIR=$dir "$nnc" "models/$m.nn" $flags --stats > "$dir.warm" 2>&1
  edited=-
  if [ "$edit" != - ]; then
    NNC_CACHE_DIR=$dir "$nnc" "models/$m.nn" $flags --set "$edit" --stats > "$dir.edit" 2>&1
    edited=$(total < "$dir.edit")
  fi
  peer=-
  if [ -z "${NO_PEERS:-}" ]; then
    t=$(echo "$flags" | sed -n 's/.*T=\([0-9]*\).*/\1/p')
    case $m in fashion_mlp|fashion_cnn|char_lstm) peer=$("$venv/bin/python" bench/compile_peers.py "$m" ${t:-64} | cut -d' ' -f2) ;; esac
  fi
  printf '%-14s %-8s %8s %8s %8s %-14s %8s %6s\n' "$m" "${flags#--set }" "$(total < "$dir.cold")" "$(total < "$dir.warm")" \
    "$edited" "${edit#-}" "$peer" "$(load)"
  printf '%-14s %-8s %6s\n' "$m" "${flags#--set }" "$(kernels < "$dir.cold")" >> "$cache/kernels"
}

printf '%-14s %-8s %8s %8s %8s %-14s %8s %6s\n' model set cold_s warm_s edited_s edit jax_s load
run xor_mlp "" -
run fashion_mlp "" hidden=128
run fashion_cnn "" -
run fashion_bn_cnn "" -
run lenet "" -
run cifar_cnn "" -
run char_rnn "" V=96
run char_rnn "--set T=256" V=96
run char_lstm "" V=96
run char_lstm "--set T=256" V=96
run tiny_gpt "" layers=3
run tiny_gpt "--set T=256" layers=3
echo
echo "distinct kernels compiled cold:"
cat "$cache/kernels"
