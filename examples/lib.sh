# Shared by examples/trec.sh and examples/mnist.sh (sourced). quickstart.sh keeps its own copy of `step` so that it
# stays one file a user can copy.

# setup NAME [DATA_DIR] [WORKDIR]: the folders of an example (sets data, work, stock, store). DATA_DIR defaults to
# ../shared/datasets next to the repository; the stock reference is DATA_DIR/../bench/stock.py (or $STOCK); WORKDIR
# defaults to a new temporary folder. Needs $here, the examples folder.
setup() {
  local name=$1
  shift
  case ${1:-} in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
  local given=${1:-$here/../../shared/datasets}
  if [ ! -d "$given" ]; then
    echo "Error: data folder $given does not exist; give DATA_DIR, the folder holding trec/ and mnist/ (see -h)" >&2
    exit 2
  fi
  data=$(cd "$given" && pwd)
  work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/embstore-$name.XXXXXX")}
  stock=${STOCK:-$(dirname "$data")/bench/stock.py}
  store="$work/$name.store"
  mkdir -p "$work"
}

# step CMD...: print the command as a user would type it, then run it
step() { { printf '\n$'; for a in "$@"; do case $a in *[[:space:]]*) printf ' "%s"' "$a" ;; *) printf ' %s' "$a" ;; esac; done; echo; } >&2; "$@"; }

# summary FILE: the headline of a `fit --json` record (the full record, per-label metrics included, stays in FILE)
summary() {
  python -c 'import json, sys; r = json.load(open(sys.argv[1])); print(json.dumps({k: r[k] for k in (
      "name", "version", "space", "n_train", "n_classes", "learned", "evaluated_on", "accuracy", "macro_f1") if k in r}))' "$1"
}
