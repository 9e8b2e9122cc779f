#!/usr/bin/env bash
# The GPU runs, as one script for a lent CUDA machine that has torch, timm, sentence-transformers, scikit-learn,
# pyarrow and pytest but not duckdb/faiss/open_clip (their wheels travel in .whl/), no ../shared (stock.py and the
# datasets travel in .gpu/) and no weight packages (bench/gpu_prep.py makes random-weight stand-ins: throughput and
# vector agreement only, never accuracy).
#   bash bench/gpu.sh [OUTDIR]
# Knobs (environment): SKIP_FIT=1, SKIP_SEARCH=1, TEXT_BATCHES="256" (one run of embed_text.py each), TEXT_AB=1 (bench/text_ab.py too),
# TEXT_ROWS, IMAGES, JPEG_SIZE (the images are RGB JPEGs this big, 256 by default; 0: MNIST-size PNGs), FIT_SIZES, SEARCH_N; DEVICE=cpu NO_WHEELS=1 tries the script on a machine without a GPU.
# The whole run took 379 s on a lent H100 (run 1, before the image fix; since then text runs 100,000 rows at one
# batch size, and the ingest-overhead step was added: not yet timed): give the device call room to spare, or run
# the first time with SKIP_FIT=1 SKIP_SEARCH=1 (the image fix and the background writer are what is unmeasured).
set -uo pipefail
out=${1:-bench/out}
mkdir -p "$out" && out=$(cd "$out" && pwd)
if [ -z "${NO_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
stock=${STOCK:-.gpu/stock.py}
[ -f "$stock" ] || stock=../shared/bench/stock.py
stock=$(cd "$(dirname "$stock")" && pwd)/$(basename "$stock")
data=${DATA:-.gpu/datasets}
[ -d "$data" ] || data=../shared/datasets
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
dev=${DEVICE:-cuda}  # DEVICE=cpu tries the script on a machine without a GPU
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, os; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'cpus', os.cpu_count())" | tee -a "$out/gpu.txt"
step() { local t=$1; shift; echo "== $* (limit ${t}s)" >&2; timeout "$t" "$@"; echo "== rc $?" >&2; }

gp=/tmp/gpu_inputs
step 120 python3 bench/gpu_prep.py --out $gp --data "$data" --text-rows ${TEXT_ROWS:-100000} --images ${IMAGES:-12000} --jpeg-size ${JPEG_SIZE:-256} \
  2>&1 | tee "$out/prep.log"
mkdir -p /tmp/cli_pkg && ln -sfn "$PWD/cli" /tmp/cli_pkg/embstore_cli  # the CLI package, as pip would install it
export PYTHONPATH=$gp/site:/tmp/cli_pkg:$PYTHONPATH
# the whole suite with the device left on auto (so: cuda), less the two tests that need the real weights' accuracy
step 240 python3 -m pytest -q -p no:cacheprovider tests -k "not test_minilm_fit_predict_search_end_to_end and not test_minilm_knn_centroid_and_few_shot_heads" \
  2>&1 | tee "$out/pytest_cuda.log" | tail -25
cd bench
step 150 python3 embed_image.py --device $dev --data $gp/images/labels.csv --limit 0 --workers 8 --repeat 2 \
  --stock "$stock" --out /tmp/bout 2>&1 | tee "$out/embed_cuda.jsonl"
# 100,000 rows by default: past index.FLAT_MAX, so the HNSW index grows in the background during the ingest
for bs in ${TEXT_BATCHES:-256}; do
  step 180 python3 embed_text.py --device $dev --data $gp/text.csv --batch-size $bs --repeat 2 --stock "$stock" --out /tmp/bout
done 2>&1 | tee -a "$out/embed_cuda.jsonl"
step 120 python3 embed_clip.py --device $dev --data $gp/images/labels.csv --limit 4000 --workers 8 --batch-size 256 --repeat 1 \
  --out /tmp/bout 2>&1 | tee -a "$out/embed_cuda.jsonl"
step 90 python3 ingest_overhead.py --data $gp/text.csv --rows 100000 --repeat 1 --out /tmp/bout 2>&1 | tee "$out/ingest_overhead.jsonl"
[ -z "${TEXT_AB:-}" ] || step 120 python3 text_ab.py $gp/text.csv $dev 2>&1 | tee "$out/text_ab.log"
[ -n "${SKIP_FIT:-}" ] || step 150 python3 fit.py --device $dev --sizes ${FIT_SIZES:-10000,100000,1000000} --stock-max 100000 --stock "$stock" 2>&1 | tee "$out/fit_cuda.jsonl"
[ -n "${SKIP_FIT:-}" ] || step 60 python3 fit.py --device cpu --sizes ${CPU_FIT_SIZES:-100000} --stock-max 0 2>&1 | tee -a "$out/fit_cuda.jsonl"
[ -n "${SKIP_SEARCH:-}" ] || step 200 python3 search.py --device $dev --n ${SEARCH_N:-1000000} --queries 1000 --stock "$stock" 2>&1 | tee "$out/search_cuda.jsonl"
