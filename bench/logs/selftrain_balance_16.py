"""Scratch: self-training with each label's share of the guesses capped at its share of the labels (MODE prior), on the
runs where the plain head collapsed at 2 per label; run as python bench/logs/selftrain_balance_16.py prior."""
import sys, numpy as np
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/bench/logs")
from selftrain_tasks_16 import auto_head
from embstore.self_training import SelfTrainingHead
from embstore.estimators import LinearProbe

class Balanced(SelfTrainingHead):
    """guesses capped per class at the labelled share x the round's sure count"""
    def fit(self, X, y, unlabelled=None, sample_weight=None, progress=None):
        X = np.asarray(X, np.float32); y = np.asarray(y); U = np.asarray(unlabelled, np.float32)
        base = np.ones(len(X))
        LinearProbe.fit(self, X, y)
        self.pseudo_labelled_ = []
        classes, counts = np.unique(y, return_counts=True); prior = counts / counts.sum()
        for r in range(self.rounds):
            P = self.predict_proba(U); conf = P.max(1); g = P.argmax(1)
            sure = conf >= self.threshold
            total = int(sure.sum())
            keep = np.zeros(len(U), bool)
            for c in range(len(self.classes_)):
                idx = np.flatnonzero(sure & (g == c))
                cap = int(np.ceil(prior[c] * total)) if MODE == "prior" else int(np.ceil(counts[c] * MULT))
                keep[idx[np.argsort(-conf[idx])[:cap]]] = True
            self.pseudo_labelled_.append(int(keep.sum()))
            if not keep.any(): break
            LinearProbe.fit(self, np.concatenate([X, U[keep]]), np.concatenate([y, self.classes_[g[keep]]]),
                            sample_weight=np.concatenate([base, np.full(int(keep.sum()), self.weight)]))
        return self

MODE = sys.argv[1]; MULT = float(sys.argv[2]) if len(sys.argv) > 2 else 0
tasks = auto_head.tasks(None)
for name, shots, seed in [("trec", 2, 0), ("trec", 2, 1), ("mnist", 2, 1), ("mnist", 2, 0), ("trec", 16, 0), ("trec", 32, 0), ("mnist", 8, 0), ("mnist", 32, 0)]:
    Xtr, ytr, Xte, yte = tasks[name]
    rows = auto_head.draw(ytr, shots, seed); pool = np.setdiff1d(np.arange(len(ytr)), rows)
    b = Balanced(device="cpu").fit(Xtr[rows], ytr[rows], unlabelled=Xtr[pool])
    print(name, shots, seed, MODE, MULT, "balanced %.3f" % (b.predict(Xte) == yte).mean(), b.pseudo_labelled_, flush=True)
