#!/usr/bin/env bash
# MNIST digits (3,000 PNGs with a train/test split column) with the default EfficientNet-Lite0 image encoder,
# then the same embeddings through stock scikit-learn (../shared/bench/stock.py) for comparison.
#
#   bash examples/mnist.sh [DATA_DIR] [WORKDIR]
#
# DATA_DIR defaults to ../shared/datasets next to the repository (it holds mnist/labels.csv: path,label,split);
# the stock reference is DATA_DIR/../bench/stock.py (or $STOCK). WORKDIR defaults to a new temporary folder.
# About 4 minutes on a 2-core CPU, most of it embedding the 3,000 images once.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=examples/lib.sh
. "$here/lib.sh"
setup mnist "$@"

# image paths in labels.csv are relative to its folder
step embstore ingest "$data/mnist/labels.csv" --image-column path --store "$store" --collection mnist
step embstore fit --store "$store" --collection mnist --label-column label --model logreg \
    --train-where "split = 'train'" --test-where "split = 'test'" --json > "$work/fit.json"
summary "$work/fit.json"

# the very same vectors and labels, through stock scikit-learn
step python "$here/export_npy.py" "$store" mnist label "$work/train" --where "split = 'train'"
step python "$here/export_npy.py" "$store" mnist label "$work/test" --where "split = 'test'"
step python "$stock" fit --train "$work/train.X.npy" "$work/train.y.npy" --test "$work/test.X.npy" "$work/test.y.npy" \
    | tee "$work/stock_fit.json"

python - "$work/fit.json" "$work/stock_fit.json" <<'PY'
import json, sys
ours, stock = json.load(open(sys.argv[1])), json.loads(open(sys.argv[2]).read())
print(f"\nMNIST test accuracy: embstore {ours['accuracy']:.4f} ({ours['n_train']} train, {ours['metrics']['n_test']} test)"
      f" | stock scikit-learn {stock['accuracy']:.4f} ({stock['n']} train)")
if ours["accuracy"] < 0.95:
    sys.exit(f"embstore accuracy {ours['accuracy']:.4f} is below the expected 0.95")
PY
