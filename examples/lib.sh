# Shared by examples/trec.sh and examples/mnist.sh (sourced). quickstart.sh keeps its own copy of `step` so that it
# stays one file a user can copy.

# step CMD...: print the command as a user would type it, then run it
step() { { printf '\n$'; for a in "$@"; do case $a in *[[:space:]]*) printf ' "%s"' "$a" ;; *) printf ' %s' "$a" ;; esac; done; echo; } >&2; "$@"; }

# summary FILE: the headline of a `fit --json` record (the full record, per-label metrics included, stays in FILE)
summary() {
  python -c 'import json, sys; r = json.load(open(sys.argv[1])); print(json.dumps({k: r[k] for k in (
      "name", "version", "space", "n_train", "n_classes", "learned", "evaluated_on", "accuracy", "macro_f1") if k in r}))' "$1"
}
