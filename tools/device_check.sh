#!/usr/bin/env bash
# The GPU check in one command: the GPU tests, then the GPU rows of docs/benchmarks.md (the
# large config on the GPU, and the largest task batch that fits), in under 10 minutes. On a
# machine with a CUDA GPU:
#
#     bash tools/device_check.sh
#
# It installs nothing: the machine's python3 must have torch, sympy, scipy, hypothesis, pytest
# and tqdm; the package runs from a temporary copy in its installed layout (theory/ as
# maml_depth.theory, ...). It writes into $OUT: env.txt, gpu_tests.log, bench.log, bench.md
# (the tables for docs/benchmarks.md).
#
# Variables: OUT (default /tmp/device_check), DEVICE (cuda), CONFIGS (large), PYTHON (python3).
# Checked on CPU with `DEVICE=cpu CONFIGS=small bash tools/device_check.sh`.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device_check}
DEVICE=${DEVICE:-cuda}
CONFIGS=${CONFIGS:-large}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# a copy of the package in its installed layout (maml_depth/theory -> theory/, ...), run from
# its own folder so that this `maml_depth/` is the one Python finds first
WORK=$(mktemp -d)
cp -r "$ROOT"/{maml_depth,theory,numerics,validation,paper_figures,tests,pyproject.toml} "$WORK/"
for sub in theory numerics validation paper_figures; do
    ln -s "../$sub" "$WORK/maml_depth/$sub"
done
export PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}"
cd "$WORK"

{
    date -u
    nvidia-smi 2>&1 | head -15
    "$PY" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
    "$PY" -c 'import maml_depth.numerics as n; print("maml_depth.numerics from", n.__file__)'
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

status=0
echo "== GPU tests (pytest -m gpu)"
# (without a GPU they are skipped, which says so)
timeout 150 "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu_tests.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

echo "== bench --device $DEVICE --configs $CONFIGS"
# each measurement's subprocess (a peer, the interleaved phase, one capacity search) gets at
# most 120 s: one that runs longer is reported as timed out and the tables are still written
timeout 420 "$PY" -m maml_depth bench --device "$DEVICE" --configs "$CONFIGS" \
    --paired-rounds 6 --paired-seconds 5 --timeout 120 --out "$OUT/bench.md" \
    > "$OUT/bench.log" 2>&1 || status=1
tail -n 40 "$OUT/bench.log"
exit $status
