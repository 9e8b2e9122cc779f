"""Accuracy by regularisation: what the cross-validated C of embstore's default head costs or buys against the stock
fixed C=1, on exported embeddings (``examples/export_npy.py``; ``examples/trec.sh`` and ``mnist.sh`` write them).

    python bench/c_sweep.py TRAIN_PREFIX TEST_PREFIX [--folds 3] [--seed 0] [--name NAME]

For every C of the default grid: the training set's own cross-validated log-loss and accuracy (the only evidence a
default may use) and the test accuracy (which it may not). Then the C embstore's ``LinearProbe`` chooses, and the test
accuracy of that choice next to ``../shared/bench/stock.py fit`` (LogisticRegression(max_iter=1000), C=1) in the same
run; then the two item by item on the test set (the same stock call in this process, checked to give stock.py's
accuracy): how many items only one gets right, McNemar's exact p-value, and both heads' macro-F1 and log-loss.
One JSON line.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from common import SHARED, cv_sweep, run_stock


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    from embstore.estimators import LinearProbe
    from embstore.evaluation import paired_comparison

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("train_prefix")
    p.add_argument("test_prefix")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None)
    a = p.parse_args()
    X, y = np.load(f"{a.train_prefix}.X.npy"), np.load(f"{a.train_prefix}.y.npy", allow_pickle=False)
    Xt, yt = np.load(f"{a.test_prefix}.X.npy"), np.load(f"{a.test_prefix}.y.npy", allow_pickle=False)
    sweep = [{"C": s["C"], "cv_log_loss": round(s["cv_log_loss"], 4), "cv_accuracy": round(s["cv_accuracy"], 4),
              "test_accuracy": round(s["test_accuracy"], 4)} for s in cv_sweep(X, y, Xt, yt, a.folds, a.seed)]
    auto = LinearProbe().fit(X, y)
    stock = run_stock(SHARED / "bench" / "stock.py", ["fit", "--train", f"{a.train_prefix}.X.npy",
                      f"{a.train_prefix}.y.npy", "--test", f"{a.test_prefix}.X.npy", f"{a.test_prefix}.y.npy"])
    same = LogisticRegression(max_iter=1000).fit(X, y)  # stock.py's call, here for its item-by-item predictions
    if abs((same.predict(Xt) == yt).mean() - stock["accuracy"]) > 1e-9:
        raise SystemExit("the in-process stock fit does not reproduce stock.py's accuracy")
    heads = {"embstore": auto, "stock": same}
    scores = {k: {"accuracy": float(accuracy_score(yt, m.predict(Xt))),
                  "macro_f1": round(float(f1_score(yt, m.predict(Xt), average="macro")), 4),
                  "log_loss": round(float(log_loss(yt, m.predict_proba(Xt), labels=m.classes_)), 4)}
              for k, m in heads.items()}
    paired = paired_comparison(auto.predict(Xt) == yt, same.predict(Xt) == yt)
    print(json.dumps({"name": a.name or a.train_prefix, "n_train": len(y), "n_test": len(yt), "sweep": sweep,
                      "best_test_C": [s["C"] for s in sweep if s["test_accuracy"] == max(x["test_accuracy"] for x in sweep)],
                      "embstore_C": auto.C_, "embstore_test_accuracy": float((auto.predict(Xt) == yt).mean()),
                      "stock_test_accuracy": stock["accuracy"], "test_scores": scores,
                      "paired": {"only_embstore_right": paired["only_this_right"],
                                 "only_stock_right": paired["only_other_right"], "mcnemar_p": round(paired["p_value"], 4)}}))


if __name__ == "__main__":
    main()
