"""The self-training head, ``fit --model selftrain``: logistic regression that also learns from the space's unlabelled
items. It fits ``LinearProbe`` on the labelled items, labels the unlabelled items it is sure of (calibrated
probability at least ``threshold``) with its guess, and fits again on both, the guessed ones at ``weight``; twice
(``rounds``), each round's guesses made by the last round's head (Yarowsky 1995; Lee 2013's pseudo-labels). What it
saves is a logistic regression like ``logreg``'s: applying it costs the same.

Why it exists. With few labels the store already holds what a supervised head ignores: the vectors of every item not
yet labelled. On TREC coarse with MiniLM, at 100 / 250 / 500 random labels (6 seeds), it scored 0.714 / 0.789 / 0.813
against logreg's 0.663 / 0.760 / 0.805; with it on both arms, ``suggest`` reaches random picking's 500-label accuracy
there at about 330 labels (270-280 before the calibration and guard below), against 420-450 with logreg; but on MNIST at 280 against 240, and on image tasks it
changes little, so it is not the default (``bench/RESULTS.md``, "Fifteenth session"). Label
spreading over the kNN graph, tried first, was far worse (0.48 at 250): in a text encoder's space the neighbours of a
question share its topic, not its kind, and only the head's hyperplane follows the labels.

Calibration: its temperature is fitted on held-out labelled items, each of 3 folds repeating the self-training
without them (``_calibrate_on_labels``). Against a temperature from fits on the full head's guesses, which carry the
held-out labels (up to 504684e), at 100 random labels on TREC coarse, TREC fine, MNIST and digits pixels, test
log-loss fell from 4.87 / 2.33 / 2.13 / 1.51 to 0.95 / 2.27 / 0.69 / 0.30 (logreg: 1.00 / 2.09 / 0.65 / 0.35). The
cost: at 250-500 labels it leans under-confident (ECE 0.02-0.18 on the test sets and 0.03-0.09 on held-out
training items, logreg's 0.02-0.07 and 0.02-0.10): a fold's head, with a third fewer labels, is less right but as
sure (``bench/RESULTS.md``, "Sixteenth session").

Where it can hurt: pseudo-labels repeat the head's mistakes, so a head that is confidently wrong on a region teaches
itself more of it. The threshold keeps the guesses to the items the calibrated head gets right about that often, and
it guesses only when every label has at least ``min_per_label`` (3) labelled items (else it is logreg): from one or
two per label the guesses snowballed (TREC coarse at 2 per label: 0.28 against logreg's 0.41). On 15 tasks at 4-32 items per label
(3 seeds) it won 49, lost 4 and tied 112 against logreg (McNemar p < 0.05), +1.9 points on average.
Unlabelled items come from ``fit``: a seeded sample of at most ``max_unlabelled`` of the space's items that are
neither training nor test items, so the cost is bounded on a space of any size.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .estimators import DEFAULT_CS, LinearProbe

# It guesses only when every label has at least this many labelled items. On 17 tasks at 1-32 items per label (3 seeds,
# bench/logs/selftrain_tasks_16.jsonl), self-training from 1-2 items per label won 19 and lost 15 against logreg,
# losing up to 13 points (TREC coarse and MNIST at 2 per label: confident wrong guesses snowball into one label);
# from 4 on it won 49, lost 4. Only 1, 2 and 4 were measured: 3 is also the least a label needs to be held out in
# each of the 3 calibration folds. Per label instead (guesses only into labels with enough items), a label below
# the minimum was starved: two separable items of one label, eight of two others, and after one round it was never
# predicted (tests/test_estimators.py).
MIN_PER_LABEL = 3


class SelfTrainingHead(LinearProbe):
    """``LinearProbe`` fitted on the labelled items and then, ``rounds`` times, on those plus the unlabelled items
    (``fit(X, y, unlabelled=U)``) whose calibrated top probability is at least ``threshold``, each at ``weight``.
    Parameters beyond LinearProbe's: ``threshold`` (0-1), ``rounds``, ``weight`` (of a guessed item against a labelled
    one), ``max_unlabelled`` (how many unlabelled items ``fit_head`` samples; here, at most that many are used),
    ``min_per_label`` (it guesses only when every label has at least this many labelled items; else it is logreg).
    After ``fit``: ``pseudo_labelled_`` (the guessed items used in each round) and ``n_unlabelled_``."""

    def __init__(self, threshold: float = 0.9, rounds: int = 2, weight: float = 0.5, max_unlabelled: int = 20_000,
                 min_per_label: int = MIN_PER_LABEL, C: Any = "auto", Cs: Any = DEFAULT_CS, cv: int = 3, class_weight: Any = None, max_iter: int = 500,
                 tol: float = 1e-4, cv_tol: float = 1e-5, cv_max_rows: int = 20_000, device: str = "auto",
                 random_state: int = 0, calibrate: bool = True):
        super().__init__(C=C, Cs=Cs, cv=cv, class_weight=class_weight, max_iter=max_iter, tol=tol, cv_tol=cv_tol,
                         cv_max_rows=cv_max_rows, device=device, random_state=random_state, calibrate=calibrate)
        self.threshold = threshold
        self.rounds = rounds
        self.weight = weight
        self.max_unlabelled = max_unlabelled
        self.min_per_label = min_per_label

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
        counts = np.bincount(np.searchsorted(self.classes_, y), minlength=len(self.classes_))
        if counts.min() < int(self.min_per_label):  # too few labels to guess from: logreg as it is
            U = U[:0]
        stages = []  # (C, temperature) of the head that made each round's guesses: the folds repeat the rounds
        guessed = None
        for r in range(int(self.rounds)):
            if not len(U):
                break
            P = self.predict_proba(U)
            sure = P.max(1) >= self.threshold
            self.pseudo_labelled_.append(int(sure.sum()))
            if not sure.any():
                break
            stages.append((self.C_, self.temperature_))
            guessed = (U[sure], self.classes_[P[sure].argmax(1)])
            super().fit(np.concatenate([X, guessed[0]]), np.concatenate([y, guessed[1]]),
                        sample_weight=np.concatenate([base, np.full(len(guessed[1]), float(self.weight))]),
                        progress=_staged(progress, f"round {r + 1}"))
        if guessed is not None and self.calibrate:
            self._calibrate_on_labels(X, y, base, U, stages)
        return self

    def _calibrate_on_labels(self, X: np.ndarray, y: np.ndarray, base: np.ndarray, U: np.ndarray,
                             stages: list) -> None:
        """The temperature from the labelled items alone, each fold's logits from a head that never saw them.

        LinearProbe's own temperature, fitted on folds that hold guessed items (the easy ones, guessed because the
        head was sure), made the head far too sure: on TREC coarse at 100 random labels, ECE 0.29 and log-loss 3.1
        against logreg's 0.08 and 1.0. Fitting it on 3 folds of the labelled items, each fold's model trained with
        the full head's guesses, still left ECE 0.24 at 100 labels: those guesses were made by a head that had seen
        the held-out labels. So each fold repeats the whole self-training on its own labelled items: a fit at the
        C of the full head's first stage, then each round's guesses by the fold's head, at the C and temperature the
        full head had in that round, and a fit on both. A label's only item trains in every fold; with no two labels
        of two items, the temperature stays."""
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
            m = self._fold_probe(stages[0][0]).fit(X[a], y[a], sample_weight=base[a])
            for r, (_, temperature) in enumerate(stages):
                m.temperature_ = temperature
                P = m.predict_proba(U)
                sure = P.max(1) >= self.threshold
                if not sure.any():
                    break
                C = stages[r + 1][0] if r + 1 < len(stages) else self.C_
                m = self._fold_probe(C).fit(
                    np.concatenate([X[a], U[sure]]), np.concatenate([y[a], m.classes_[P[sure].argmax(1)]]),
                    sample_weight=np.concatenate([base[a], np.full(int(sure.sum()), float(self.weight))]))
            cols = np.searchsorted(self.classes_, m.classes_)
            z[np.ix_(b, cols)] = X[b] @ m.coef_.T + m.intercept_
        self.temperature_ = fit_temperature(z[scored], t[scored])

    def _fold_probe(self, C: float) -> LinearProbe:
        return LinearProbe(C=C, Cs=self.Cs, cv=self.cv, class_weight=self.class_weight, max_iter=self.max_iter,
                           tol=self.tol, device=self.device, random_state=self.random_state, calibrate=False)

    def checked(self) -> "SelfTrainingHead":
        """Itself, its own parameters checked (a ValueError naming the bad one): before any vector is read."""
        for key in ("threshold", "weight", "rounds", "max_unlabelled", "min_per_label"):
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
        if int(self.min_per_label) != self.min_per_label or self.min_per_label < 1:
            raise ValueError(f"min_per_label must be a whole number of at least 1, got {self.min_per_label!r}")
        return self


def _staged(progress: Any, stage: str) -> Any:
    if progress is None:
        return None
    return lambda _stage, done, total: progress(stage, done, total)
