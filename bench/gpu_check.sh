#!/usr/bin/env bash
# The GPU check of the CUDA backend, in one unattended run (docs/gpu.md): on a machine with
# an NVIDIA GPU, run the CUDA tests for real (pytest -m gpu, no simulator), then the
# benchmark (bench/gpu.py), and write every figure and log to one folder:
#
#   bash bench/gpu_check.sh [DIR]        # DIR: $OUT if set, else gpu-results/
#
# DIR then holds (8 files): nvidia-smi.txt, install.log, tests.log, bench.log, gpu.json and
# gpu.md (bench/gpu.py's figures), timing.txt and summary.txt, whose first line is
# "PASSED" or "FAILED: <what>".  The exit status is 0 only when everything passed.
#
# Python: $PYTHON (default python3).  If it cannot import fastvi, a virtualenv that sees
# its packages (--system-site-packages: numba, numba-cuda, torch, scikit-learn, h5py) is
# made in /tmp and the checkout installed there without downloading anything; so the
# machine needs fastvi's dependencies and numba-cuda, not network access.
# Sized to end in under 8 minutes on an H100: tests 150 s at most, benchmark 330 s.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-results}}
mkdir -p "$out"
started=$SECONDS
failed=()
export NUMBA_ENABLE_CUDASIM=0 PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

(nvidia-smi || echo "nvidia-smi failed") > "$out/nvidia-smi.txt" 2>&1

if ! "$python" -c "import fastvi.kernels.cuda" > "$out/install.log" 2>&1; then
  venv=/tmp/fastvi-gpu-venv
  { "$python" -m venv --system-site-packages "$venv" &&
    "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation --no-index -e . &&
    "$venv/bin/python" -c "import fastvi.kernels.cuda"; } >> "$out/install.log" 2>&1 \
    || failed+=("install (see install.log)")
  python=$venv/bin/python
fi
"$python" -c "import numba, numba_cuda, fastvi; from numba import cuda
print('numba', numba.__version__, 'numba-cuda', numba_cuda.__version__)
print('gpu:', cuda.get_current_device().name)" >> "$out/install.log" 2>&1 \
  || failed+=("no usable GPU through numba-cuda (see install.log)")

step=$SECONDS
timeout 150 "$python" -m pytest -m gpu tests/test_cuda.py -q -p no:cacheprovider -rs \
  > "$out/tests.log" 2>&1
code=$?
[[ $code -eq 0 ]] || failed+=("tests, exit $code (see tests.log)")
echo "tests: $((SECONDS - step)) s (exit $code)" > "$out/timing.txt"

step=$SECONDS
timeout 330 "$python" bench/gpu.py --out "$out" --budget-seconds 300 > "$out/bench.log" 2>&1
code=$?
[[ $code -eq 0 ]] || failed+=("benchmark, exit $code (see bench.log and gpu.md)")
echo "benchmark: $((SECONDS - step)) s (exit $code)" >> "$out/timing.txt"
echo "total: $((SECONDS - started)) s" >> "$out/timing.txt"

{
  if [[ ${#failed[@]} -eq 0 ]]; then echo "PASSED"; else
    echo "FAILED: $(IFS=';'; echo "${failed[*]}")"; fi
  tail -n 3 "$out/tests.log"
  cat "$out/timing.txt"
} > "$out/summary.txt"
cat "$out/summary.txt"
[[ ${#failed[@]} -eq 0 ]]
