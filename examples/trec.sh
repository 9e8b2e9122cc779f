#!/usr/bin/env bash
# TREC question classification (6 coarse labels) with the default MiniLM text encoder, then the same embeddings
# through stock scikit-learn (../shared/bench/stock.py) for comparison.
#
#   bash examples/trec.sh [DATA_DIR] [WORKDIR]
#
# DATA_DIR defaults to ../shared/datasets next to the repository (it holds trec/train.csv and trec/test.csv);
# the stock reference is DATA_DIR/../bench/stock.py (or $STOCK). WORKDIR defaults to a new temporary folder.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
data=$(cd "${1:-$here/../../shared/datasets}" && pwd)
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/embstore-trec.XXXXXX")}
stock=${STOCK:-$(dirname "$data")/bench/stock.py}
store="$work/trec.store"
mkdir -p "$work"
# shellcheck source=examples/lib.sh
. "$here/lib.sh"

step embstore ingest "$data/trec/train.csv" --store "$store" --collection trec_train
step embstore ingest "$data/trec/test.csv" --store "$store" --collection trec_test
step embstore fit --store "$store" --collection trec_train --label-column label --model logreg \
    --test-collection trec_test --json > "$work/fit.json"
summary "$work/fit.json"

# the very same vectors and labels, through stock scikit-learn
step python "$here/export_npy.py" "$store" trec_train label "$work/train"
step python "$here/export_npy.py" "$store" trec_test label "$work/test"
step python "$stock" fit --train "$work/train.X.npy" "$work/train.y.npy" --test "$work/test.X.npy" "$work/test.y.npy" \
    | tee "$work/stock_fit.json"

python - "$work/fit.json" "$work/stock_fit.json" <<'PY'
import json, sys
ours, stock = json.load(open(sys.argv[1])), json.loads(open(sys.argv[2]).read())
print(f"\nTREC test accuracy: embstore {ours['accuracy']:.4f} ({ours['n_train']} train, {ours['metrics']['n_test']} test)"
      f" | stock scikit-learn {stock['accuracy']:.4f} ({stock['n']} train)")
PY
