#!/usr/bin/env bash
# One GPU session, start to end, for a lent machine with no network (the device tool's `run`):
# installs the carried wheels (tools/wheelhouse.py --out .whl ...) beside the machine's own CUDA torch,
# builds the twins, runs `make check-gpu`'s matrix, then the GPU benchmarks, each within its own time
# budget, writing everything under $OUT (the JSON reports and their logs).
#
#   tools/gpu_session.sh [CHECK_BUDGET_S] [PERF_BUDGET_S]
set -u
CHECK_BUDGET=${1:-300}
PERF_BUDGET=${2:-200}
OUT=${OUT:-out/gpu-session}
WHEELS=${WHEELS:-.whl}
TINY=${TINY:+--tiny}   # TINY=1: the same run on the embedded tiny backbones, to rehearse it on a CPU
mkdir -p "$OUT"
start=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    >"$OUT/install.log" 2>&1 || { tail -5 "$OUT/install.log"; exit 1; }
# rare itself from the carried wheel if there is one, else from this checkout (the device's 64 MiB carry
# limit: the checkout with the toy worlds' weights and the wheels together can exceed it).
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 RARE_CACHE_DIR=/tmp/rare-cache
echo "installed in $(( $(date +%s) - start )) s"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv >"$OUT/nvidia-smi.csv" 2>&1
python3 -c "import rarecli, torch, diffusers, transformers; print(rarecli.__file__, torch.__version__, diffusers.__version__, transformers.__version__)"
python3 tools/check_gpu.py --out "$OUT/check-gpu.json" --work /tmp/check --budget "$CHECK_BUDGET" $TINY 2>"$OUT/check-gpu.log"
echo "check-gpu exit $? at $(( $(date +%s) - start )) s"
grep -E "^(pass|FAIL)" "$OUT/check-gpu.log" | cut -c1-220
python3 benchmarks/gpu_perf.py --out "$OUT/gpu-perf.json" --budget "$PERF_BUDGET" $TINY 2>"$OUT/gpu-perf.log"
echo "gpu-perf exit $? at $(( $(date +%s) - start )) s"
grep -E "^(setup|seedselect|breakdown|nao|sd3) " "$OUT/gpu-perf.log" | cut -c1-400
tail -3 "$OUT/gpu-perf.log"
