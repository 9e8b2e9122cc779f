#!/usr/bin/env bash
# TREC question classification (6 coarse labels) with the default MiniLM text encoder, then the same embeddings
# through stock scikit-learn (../shared/bench/stock.py) for comparison; then the 50 fine labels on the very same
# vectors (a labels file joined by text in SQL, nothing re-embedded), again against stock.
#
#   bash examples/trec.sh [DATA_DIR] [WORKDIR]
#
# DATA_DIR defaults to ../shared/datasets next to the repository (it holds trec/train.csv and trec/test.csv);
# the stock reference is DATA_DIR/../bench/stock.py (or $STOCK). WORKDIR defaults to a new temporary folder.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=examples/lib.sh
. "$here/lib.sh"
setup trec "$@"

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

# the 50 fine labels (DESC:manner, NUM:dist, ...) of the same questions: an id,label file made in SQL, same vectors
step embstore sql --store "$store" --format csv -o "$work/fine_labels.csv" \
    "SELECT i.id, min(f.label) AS label
     FROM (SELECT id, text FROM trec_train UNION ALL SELECT id, text FROM trec_test) i
     JOIN (SELECT text, label FROM read_csv('$data/trec/train_fine.csv')
           UNION ALL SELECT text, label FROM read_csv('$data/trec/test_fine.csv')) f USING (text)
     GROUP BY i.id"
step embstore fit --store "$store" --collection trec_train --labels "$work/fine_labels.csv" --name trec_fine \
    --test-collection trec_test --json > "$work/fine_fit.json"
summary "$work/fine_fit.json"
step python "$here/export_npy.py" "$store" trec_train --labels "$work/fine_labels.csv" "$work/fine_train"
step python "$here/export_npy.py" "$store" trec_test --labels "$work/fine_labels.csv" "$work/fine_test"
step python "$stock" fit --train "$work/fine_train.X.npy" "$work/fine_train.y.npy" \
    --test "$work/fine_test.X.npy" "$work/fine_test.y.npy" | tee "$work/stock_fine_fit.json"

python - "$work" <<'PY'
import json, sys
for task, ours, stock in (("coarse, 6 labels", "fit.json", "stock_fit.json"),
                          ("fine, 50 labels", "fine_fit.json", "stock_fine_fit.json")):
    o, s = json.load(open(f"{sys.argv[1]}/{ours}")), json.load(open(f"{sys.argv[1]}/{stock}"))
    print(f"TREC {task}: test accuracy embstore {o['accuracy']:.4f} (C={o['learned']['C_']:g} by CV; "
          f"{o['n_train']} train, {o['metrics']['n_test']} test) | stock scikit-learn {s['accuracy']:.4f} (C=1)")
PY
