"""The self-training head, ``fit --model selftrain``: logistic regression that also learns from the space's unlabelled
items. It fits ``LinearProbe`` on the labelled items, labels the unlabelled items it is sure of (calibrated
probability at least ``threshold``) with its guess, and fits again on both, the guessed ones at ``weight``; twice
(``rounds``), each round's guesses made by the last round's head (Yarowsky 1995; Lee 2013's pseudo-labels). What it
saves is a logistic regression like ``logreg``'s: applying it costs the same.

Why it exists. With few labels the store already holds what a supervised head ignores: the vectors of every item not
yet labelled. On TREC coarse with MiniLM, at 100 / 250 / 500 random labels (6 seeds), it scored 0.714 / 0.789 / 0.813
against logreg's 0.663 / 0.760 / 0.805; with it on both arms, ``suggest`` reaches random picking's 500-label accuracy
there at about 270-280 labels, against 420-450 with logreg; but on MNIST at 280 against 240, and on image tasks it
changes little, so it is not the default (``bench/RESULTS.md``, "Fifteenth session"). Label
spreading over the kNN graph, tried first, was far worse (0.48 at 250): in a text encoder's space the neighbours of a
question share its topic, not its kind, and only the head's hyperplane follows the labels.

Calibration: its temperature is fitted on held-out labelled items (``_calibrate_on_labels``). On TREC coarse, test
log-loss 0.58 against logreg's 0.64 at 250 labels and 0.53 against 0.54 at 500, but 1.92 against 1.00 at 100: with
few labels the guessed items still carry the held-out items' labels into the folds, and it is over-sure.

Where it can hurt: pseudo-labels repeat the head's mistakes, so a head that is confidently wrong on a region teaches
itself more of it. The threshold keeps the guesses to the items the calibrated head gets right about that often.
Unlabelled items come from ``fit``: a seeded sample of at most ``max_unlabelled`` of the space's items that are
neither training nor test items, so the cost is bounded on a space of any size.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .estimators import DEFAULT_CS, LinearProbe


class SelfTrainingHead(LinearProbe):
    """``LinearProbe`` fitted on the labelled items and then, ``rounds`` times, on those plus the unlabelled items
    (``fit(X, y, unlabelled=U)``) whose calibrated top probability is at least ``threshold``, each at ``weight``.
    Parameters beyond LinearProbe's: ``threshold`` (0-1), ``rounds``, ``weight`` (of a guessed item against a labelled
    one), ``max_unlabelled`` (how many unlabelled items ``fit_head`` samples; here, at most that many are used).
    After ``fit``: ``pseudo_labelled_`` (the guessed items used in each round) and ``n_unlabelled_``."""

    def __init__(self, threshold: float = 0.9, rounds: int = 2, weight: float = 0.5, max_unlabelled: int = 20_000,
                 C: Any = "auto", Cs: Any = DEFAULT_CS, cv: int = 3, class_weight: Any = None, max_iter: int = 500,
                 tol: float = 1e-4, cv_tol: float = 1e-5, cv_max_rows: int = 20_000, device: str = "auto",
                 random_state: int = 0, calibrate: bool = True):
        super().__init__(C=C, Cs=Cs, cv=cv, class_weight=class_weight, max_iter=max_iter, tol=tol, cv_tol=cv_tol,
                         cv_max_rows=cv_max_rows, device=device, random_state=random_state, calibrate=calibrate)
        self.threshold = threshold
        self.rounds = rounds
        self.weight = weight
        self.max_unlabelled = max_unlabelled

    def fit(self, X: Any, y: Any, unlabelled: Any = None, sample_weight: Any = None,
            progress: Any = None) -> "SelfTrainingHead":
        """``progress(stage, done, total)``: LinearProbe's solves, the stage named by the round ("fit", "round 1")."""
        self.checked()
        X = np.asarray(X, np.float32)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:
            raise ValueError("selftrain takes one label per item; multi-label targets need logreg")
        base = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        U = np.zeros((0, X.shape[1]), np.float32) if unlabelled is None else np.asarray(unlabelled, np.float32)
        if len(U) > self.max_unlabelled:
            keep = np.random.default_rng(self.random_state).choice(len(U), self.max_unlabelled, replace=False)
            U = U[np.sort(keep)]
        self.n_unlabelled_ = len(U)
        self.pseudo_labelled_: list[int] = []
        super().fit(X, y, sample_weight=sample_weight, progress=_staged(progress, "fit"))
        guessed = None
        for r in range(int(self.rounds)):
            if not len(U):
                break
            P = self.predict_proba(U)
            sure = P.max(1) >= self.threshold
            self.pseudo_labelled_.append(int(sure.sum()))
            if not sure.any():
                break
            guessed = (U[sure], self.classes_[P[sure].argmax(1)])
            super().fit(np.concatenate([X, guessed[0]]), np.concatenate([y, guessed[1]]),
                        sample_weight=np.concatenate([base, np.full(len(guessed[1]), float(self.weight))]),
                        progress=_staged(progress, f"round {r + 1}"))
        if guessed is not None and self.calibrate:
            self._calibrate_on_labels(X, y, base, guessed)
        return self

    def _calibrate_on_labels(self, X: np.ndarray, y: np.ndarray, base: np.ndarray, guessed: tuple) -> None:
        """The temperature from the labelled items alone. LinearProbe's own, fitted on folds that hold guessed items
        (the easy ones, guessed because the head was sure), made the head far too sure: on TREC coarse at 100
        random labels, ECE 0.29 and log-loss 3.1 against logreg's 0.08 and 1.0. Here each of 3 folds of the labelled
        items is held out of a fit at the chosen C (with every guessed item), and the temperature is fitted on their
        logits (a label's only item trains in every fold; with no two labels of two items, the temperature stays)."""
        from sklearn.model_selection import StratifiedKFold

        from .estimators import fit_temperature

        t = np.searchsorted(self.classes_, y)
        counts = np.bincount(t, minlength=len(self.classes_))
        scored = np.flatnonzero(counts[t] >= 2)  # a label's only item trains in every fold, is never held out
        if len(np.unique(t[scored])) < 2:
            return
        always = np.flatnonzero(counts[t] < 2)
        folds = int(min(3, counts[counts >= 2].min()))
        z = np.full((len(X), len(self.classes_)), -30.0)
        for a, b in StratifiedKFold(folds, shuffle=True, random_state=self.random_state).split(scored, t[scored]):
            a, b = np.concatenate([scored[a], always]), scored[b]
            m = LinearProbe(C=self.C_, Cs=self.Cs, cv=self.cv, class_weight=self.class_weight, max_iter=self.max_iter,
                            tol=self.tol, device=self.device, random_state=self.random_state, calibrate=False)
            m.fit(np.concatenate([X[a], guessed[0]]), np.concatenate([y[a], guessed[1]]),
                  sample_weight=np.concatenate([base[a], np.full(len(guessed[1]), float(self.weight))]))
            cols = np.searchsorted(self.classes_, m.classes_)
            z[np.ix_(b, cols)] = X[b] @ m.coef_.T + m.intercept_
        self.temperature_ = fit_temperature(z[scored], t[scored])

    def checked(self) -> "SelfTrainingHead":
        """Itself, its own parameters checked (a ValueError naming the bad one): before any vector is read."""
        for key in ("threshold", "weight", "rounds", "max_unlabelled"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{key} must be a number, got {value!r}")
        if not 0.0 < float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be above 0 and at most 1, got {self.threshold!r}")
        if not 0.0 < float(self.weight) <= 1.0:
            raise ValueError(f"weight must be above 0 and at most 1, got {self.weight!r}")
        if int(self.rounds) != self.rounds or self.rounds < 0:
            raise ValueError(f"rounds must be a whole number of at least 0, got {self.rounds!r}")
        if int(self.max_unlabelled) != self.max_unlabelled or self.max_unlabelled < 0:
            raise ValueError(f"max_unlabelled must be a whole number of at least 0, got {self.max_unlabelled!r}")
        return self


def _staged(progress: Any, stage: str) -> Any:
    if progress is None:
        return None
    return lambda _stage, done, total: progress(stage, done, total)
