#!/usr/bin/env bash
# The prebuilt stores the accuracy benchmarks read (bench/common.py TASKS), from ../shared/datasets and scikit-learn:
#   bash bench/build_stores.sh [DIR]      # default: $EMBSTORE_BENCH_STORES or /work/bench-stores
# trec.store: trec_train/trec_test (coarse) and trec_fine_train/trec_fine_test (MiniLM, the default text encoder);
# mnist.store: mnist (3,000 images, a split column; EfficientNet-Lite0); digits.store: digits (1,797 8x8 images as
# PNG folders, the label in `folder`). About 6 minutes on a 2-core CPU.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED:-$here/../../shared}/datasets
out=${1:-${EMBSTORE_BENCH_STORES:-/work/bench-stores}}
mkdir -p "$out"
for split in train test; do
  embstore ingest "$shared/trec/$split.csv" --store "$out/trec.store" --collection "trec_$split" --text-column text
  embstore ingest "$shared/trec/${split}_fine.csv" --store "$out/trec.store" --collection "trec_fine_$split" --text-column text
done
embstore ingest "$shared/mnist/labels.csv" --store "$out/mnist.store" --collection mnist --image-column path
python "$here/../examples/digits_to_png.py" "$out/digits_png"
embstore ingest "$out/digits_png" --store "$out/digits.store" --collection digits
