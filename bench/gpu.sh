#!/usr/bin/env bash
# The GPU runs of the benchmarks, as one script for a lent CUDA machine that has torch, scikit-learn, pyarrow and
# scipy but not duckdb/faiss (their wheels travel in .whl/) and no ../shared (stock.py travels in .gpu/).
#   bash bench/gpu.sh [OUTDIR]
set -uo pipefail
out=${1:-bench/out}
mkdir -p "$out" && out=$(cd "$out" && pwd)
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
stock=${STOCK:-.gpu/stock.py}
[ -f "$stock" ] || stock=../shared/bench/stock.py
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'cpus', __import__('os').cpu_count())" | tee -a "$out/gpu.txt"
cd bench
python3 fit.py --device cuda --sizes 10000,100000,1000000 --stock-max 100000 --stock "../$stock" 2>&1 | tee "$out/fit_cuda.jsonl"
python3 fit.py --device cpu --sizes 100000 --stock-max 0 2>&1 | tee -a "$out/fit_cuda.jsonl"
python3 search.py --device cuda --n 1000000 --queries 1000 --stock "../$stock" 2>&1 | tee "$out/search_cuda.jsonl"
