#!/usr/bin/env bash
# The whole loop on data that ships with scikit-learn (no network, no user data):
# 1,797 8x8 digit images -> PNG folders -> ingest -> fit -> predict -> search -> SQL -> info.
#
#   bash examples/quickstart.sh [WORKDIR]     # default: a new temporary folder
#
# Needs `embstore` and `python` from the environment you installed embstore into (pip install -e .).
# About 3 minutes on a 2-core CPU, most of it embedding the images once with EfficientNet-Lite0.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
case ${1:-} in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/embstore-quickstart.XXXXXX")}
store="$work/digits.store"
mkdir -p "$work"
step() { { printf '\n$'; for a in "$@"; do case $a in *[[:space:]]*) printf ' "%s"' "$a" ;; *) printf ' %s' "$a" ;; esac; done; echo; } >&2; "$@"; }

step python "$here/digits_to_png.py" "$work/digits"

# the folder a PNG sits in (its digit) becomes the `folder` column
step embstore ingest "$work/digits" --store "$store" --collection digits

# a logistic-regression head on the cached embeddings, scored on a held-out 20%
step embstore fit --store "$store" --collection digits --label-column folder --name digit

# label every item; the result is the `predictions` SQL view
step embstore predict --store "$store" --head digit --collection digits

# the 5 items nearest to one image
step embstore search --store "$store" --collection digits --image "$work/digits/3/digit_0003.png" -k 5

# predictions joined with the items they label
step embstore sql --store "$store" "SELECT i.folder AS digit, count(*) AS items,
    round(avg((p.label = i.folder)::INT), 4) AS agree, round(avg(p.confidence), 4) AS confidence
  FROM predictions p JOIN digits i USING (id) WHERE p.collection = 'digits' AND p.head = 'digit' GROUP BY digit ORDER BY digit"

step embstore info --store "$store"

printf '\nstore: %s\n' "$store"
