#!/usr/bin/env bash
# From no labels to a classifier with few of them: suggest -> label -> fit -> suggest with the head -> fit ->
# label-issues -> duplicates, on the quickstart's digits store (run examples/quickstart.sh first).
#
#   bash examples/label_budget.sh [STORE] [WORKDIR]   # default: the newest /tmp/embstore-quickstart.*/digits.store
#
# The annotator is simulated: a person would type each digit into the CSV; here it is the folder its PNG is in.
set -euo pipefail
case ${1:-} in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
store=${1:-$(ls -dt "${TMPDIR:-/tmp}"/embstore-quickstart.*/digits.store 2>/dev/null | head -1)}
[ -d "$store" ] || { echo "no store: run examples/quickstart.sh first, or pass its digits.store" >&2; exit 2; }
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/embstore-labels.XXXXXX")}
mkdir -p "$work"
step() { { printf '\n$'; for a in "$@"; do case $a in *[[:space:]]*) printf ' "%s"' "$a" ;; *) printf ' %s' "$a" ;; esac; done; echo; } >&2; "$@"; }
annotate() {  # fill the label column of a suggest CSV: the digit is the PNG's folder
  python - "$1" <<'PY'
import csv, os, sys
rows = list(csv.DictReader(open(sys.argv[1], encoding="utf-8")))
for r in rows:
    r["label"] = os.path.basename(os.path.dirname(r["content"]))
with open(sys.argv[1], "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, list(rows[0]))
    w.writeheader()
    w.writerows(rows)
PY
}

# round 1: nothing labelled yet, so a diverse sample of the space
step embstore suggest --store "$store" -c digits -n 40 -o "$work/round1.csv" >/dev/null
annotate "$work/round1.csv"
step embstore fit --store "$store" -c digits --labels "$work/round1.csv" --name budget --model logreg
# round 2: what that head is least sure of, spread out (the 40 labelled ones are not offered again)
step embstore suggest --store "$store" -c digits -n 40 --head budget -o "$work/round2.csv"
annotate "$work/round2.csv"
# the default head (auto) on the 80 labels (scored on a held-out 16 of them), then applied to every item, and
# SQL says how often it agrees with the folder (the truth here, which a real user would not have)
step embstore fit --store "$store" -c digits --labels "$work/round1.csv" --labels "$work/round2.csv" --name budget
step embstore predict --store "$store" --head budget -c digits >/dev/null
step embstore sql --store "$store" "SELECT count(*) AS items, round(avg((p.label = d.folder)::INT), 4) AS agree
  FROM predictions p JOIN digits d USING (id) WHERE p.head = 'budget'"
# labels that look wrong, and items that are near-copies of each other
step embstore label-issues --store "$store" -c digits --labels "$work/round1.csv" --labels "$work/round2.csv" --limit 5
step embstore duplicates --store "$store" -c digits --threshold 0.98 --limit 5
printf '\nlabels: %s %s\n' "$work/round1.csv" "$work/round2.csv"
