"""The heads as scikit-learn estimators, usable in a user's own pipelines.

- ``LinearProbe``: L2-regularised logistic regression (softmax for one label per item, sigmoid per label for
  multi-label indicator targets), solved by scipy's L-BFGS-B with loss and gradient computed in torch (float32, on the GPU when there is one); its
  objective is scikit-learn's (``C * sum(loss) + ||W||^2 / 2``, intercept not penalised). ``C="auto"`` chooses C by
  stratified k-fold cross-validation over a grid, warm-starting along the path.
- ``KNNHead``: cosine k-nearest neighbours over a FAISS inner-product index (its own, or one it is served from);
  ``n_neighbors="auto"`` picks k by leave-one-out accuracy on up to 5,000 training items (past the grid's
  largest k, doubling, while the largest is best).
- ``CentroidHead``: cosine nearest centroid, with probabilities from a softmax over similarities; trains from one
  example per label.

All follow the estimator rules: ``__init__`` only stores parameters, ``fit`` validates and returns ``self``, learned
attributes end in ``_``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted

K_MAX = 1000  # the largest k the kNN head's search for k goes to
DEFAULT_CS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)  # walked from strong to weak; stops once held-out loss rises


def _validate(est: Any, X: Any, y: Any = None, reset: bool = True) -> Any:
    try:  # scikit-learn >= 1.6
        from sklearn.utils.validation import validate_data

        if y is None:
            return validate_data(est, X, reset=reset, dtype=[np.float32, np.float64])
        return validate_data(est, X, y, reset=reset, dtype=[np.float32, np.float64], multi_output=True)
    except ImportError:  # pragma: no cover - older scikit-learn
        if y is None:
            return est._validate_data(X, reset=reset, dtype=[np.float32, np.float64])
        return est._validate_data(X, y, reset=reset, dtype=[np.float32, np.float64], multi_output=True)


class _one_thread:
    """Small solves run on one CPU thread (torch, BLAS, OpenMP): a thread pool costs more than it gives there, and
    its spinning threads slow to a crawl when the cores are shared with other work (measured: TREC 5k x 384 took
    3.7 s on one thread, 14.6 s on two, on a busy 2-core machine)."""

    def __init__(self, small: bool):
        self.small = small

    def __enter__(self) -> None:
        self.limits = self.threads = None
        if self.small:
            import torch
            from threadpoolctl import threadpool_limits

            self.threads = torch.get_num_threads()
            torch.set_num_threads(1)
            self.limits = threadpool_limits(limits=1)

    def __exit__(self, *exc: Any) -> None:
        if self.small:
            import torch

            self.limits.restore_original_limits()
            torch.set_num_threads(self.threads)


def _require_y(est: Any, y: Any) -> None:
    if y is None:
        raise ValueError(f"{type(est).__name__} requires y to be passed, but the target y is None")


def _device(device: str) -> str:
    if device != "auto":
        from .config import check_device, resolve_device

        device = resolve_device(device)  # a known name (cpu, cuda, cuda:N, mps) ...
        check_device(device)  # ... that this machine has
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _sample_weight(y_idx: np.ndarray, n_classes: int, class_weight: Any, sample_weight: Any) -> np.ndarray:
    w = np.ones(len(y_idx), np.float64) if sample_weight is None else np.asarray(sample_weight, np.float64).copy()
    if class_weight == "balanced":
        counts = np.bincount(y_idx, minlength=n_classes).astype(np.float64)
        w *= (len(y_idx) / (n_classes * np.maximum(counts, 1)))[y_idx]
    elif isinstance(class_weight, dict):
        raise ValueError("class_weight as a dict is applied by label in fit; pass 'balanced' or None here")
    return w


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Logistic regression on frozen embeddings, C chosen by cross-validation unless fixed.

    Probabilities are calibrated by a temperature fitted on the cross-validation's held-out logits (at a fixed C too,
    by the same folds at that C); ``calibrate=False`` leaves them as plain logistic regression's (temperature 1).

    Parameters: ``C`` ("auto" or a positive float), ``Cs`` (grid for "auto"), ``cv`` (folds), ``class_weight``
    (None, "balanced" or {label: weight}), ``max_iter``, ``tol`` (max gradient entry of the mean loss at the final
    fit), ``cv_tol`` (the same along the CV path: tighter, since a warm start begins near the answer), ``cv_max_rows`` (C is chosen on a stratified
    sample of at most this many rows, then the final fit uses all), ``device`` ("auto", "cpu", "cuda"),
    ``random_state``, ``calibrate``.
    """

    def __init__(self, C: Any = "auto", Cs: Any = DEFAULT_CS, cv: int = 3, class_weight: Any = None,
                 max_iter: int = 500, tol: float = 1e-4, cv_tol: float = 1e-5, cv_max_rows: int = 20_000,
                 device: str = "auto", random_state: int = 0, calibrate: bool = True):
        self.C = C
        self.Cs = Cs
        self.cv = cv
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol
        self.cv_tol = cv_tol
        self.cv_max_rows = cv_max_rows
        self.device = device
        self.random_state = random_state
        self.calibrate = calibrate

    # ------------------------------------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any, sample_weight: Any = None, progress: Any = None) -> "LinearProbe":
        """``progress(stage, done, total)``, when given, counts the solves: each C of the search on each fold,
        then the final fit (an upper bound: the search stops early once past the best C)."""
        _require_y(self, y)
        self._progress = progress
        X, y = _validate(self, X, y)
        if sample_weight is not None:
            from sklearn.utils.validation import _check_sample_weight

            sample_weight = _check_sample_weight(sample_weight, X)
            if not sample_weight.sum() > 0:
                raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight")
        self.multilabel_ = type_of_target(y) == "multilabel-indicator" or (y.ndim == 2 and y.shape[1] > 1)
        if self.multilabel_:
            Y = np.asarray(y, np.float32)
            self.classes_ = np.arange(Y.shape[1])
            targets = Y
            strat = Y.argmax(1)
        else:
            if y.ndim == 2:
                y = y.ravel()
            check_classification_targets(y)
            enc = LabelEncoder().fit(y)
            self.classes_ = enc.classes_
            if len(self.classes_) < 2:
                raise ValueError(f"LinearProbe needs at least 2 classes; got 1 class: {self.classes_.tolist()}")
            targets = enc.transform(y)
            strat = targets
        cw = self.class_weight
        if isinstance(cw, dict):
            w = np.asarray([cw.get(c, 1.0) for c in (self.classes_[strat] if not self.multilabel_ else strat)])
            weights = w * (1.0 if sample_weight is None else np.asarray(sample_weight, np.float64))
        elif not self.multilabel_:
            weights = _sample_weight(strat, len(self.classes_), cw, sample_weight)
        else:
            weights = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        if not isinstance(self.calibrate, (bool, np.bool_)):
            raise ValueError(f"calibrate must be true or false, got {self.calibrate!r}")
        self.temperature_ = 1.0
        self.cv_how_ = "none"
        self._cv_init = None
        self._steps = 1  # the final fit; the C search adds its solves
        if self.C == "auto":
            with _one_thread(True):  # the CV path works on at most cv_max_rows rows
                self.C_, self.cv_scores_ = self._choose_C(X, targets, strat, weights)
        else:
            if not _positive_number(self.C):
                raise ValueError(f"C must be 'auto' or a positive number, got {self.C!r}")
            self.C_ = float(self.C)
            if self.calibrate:
                with _one_thread(True):  # the same folds at this one C: only to calibrate (temperature_)
                    self._choose_C(X, targets, strat, weights, Cs=[self.C_])
            self.cv_scores_ = {}
        if not self.calibrate:
            self.temperature_ = 1.0
        # warm start from the CV fit at the chosen C (the mean of the folds' weights): fewer iterations, same optimum
        with _one_thread(X.shape[0] * X.shape[1] < 200_000_000):  # below ~500k x 384: few iterations after the warm start
            W, b, self.n_iter_ = self._solve(X, targets, weights, self.C_, init=getattr(self, "_cv_init", None))
        self.__dict__.pop("_cv_init", None)
        if progress is not None:
            progress("fit", self._steps, self._steps)
        self.__dict__.pop("_progress", None)
        self.coef_, self.intercept_ = W, b
        return self

    def _choose_C(self, X: np.ndarray, targets: np.ndarray, strat: np.ndarray, weights: np.ndarray,
                  Cs: Any = None) -> tuple:
        """C with the lowest held-out (temperature-scaled) log-loss: k-fold on small data, one stratified hold-out on a sample of at
        most ``cv_max_rows`` rows on large data; items of labels too rare to be held out train in every fold.
        Returns (C, {C: -loss}) and keeps the winning weights to warm-start the final fit."""
        from sklearn.model_selection import StratifiedKFold, train_test_split

        rows = np.arange(len(X))
        counts = np.bincount(strat)
        if len(X) > self.cv_max_rows:
            rows, _ = train_test_split(rows, train_size=self.cv_max_rows, random_state=self.random_state,
                                       stratify=strat if counts[counts > 0].min() >= 2 else None)
        counts = np.bincount(strat[rows])
        # a label with fewer items than folds cannot be held out in every fold: its items always train, never score
        # (one rare label must not switch the search off for all the others)
        folds = int(self.cv)
        scored = counts[strat[rows]] >= folds
        if folds > 2 and len(np.unique(strat[rows][scored])) < 2:
            folds = 2
            scored = counts[strat[rows]] >= folds
        if len(np.unique(strat[rows][scored])) < 2:  # nothing to score C on: keep the middle of the grid
            self.cv_how_ = "none: fewer than two labels have two training items"
            return 1.0, {}
        pool, always = rows[scored], rows[~scored]
        if len(pool) >= 10_000:  # plenty of data: one hold-out split is as good as k folds, and k times cheaper
            tr, te = train_test_split(np.arange(len(pool)), test_size=0.2, random_state=self.random_state,
                                      stratify=strat[pool])
            splits = [(tr, te)]
            self.cv_how_ = f"one stratified 20% hold-out of {len(pool):,} rows"
        else:
            splits = list(StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
                          .split(pool, strat[pool]))
            self.cv_how_ = f"{folds}-fold stratified CV over {len(pool):,} rows"
        if len(always):
            n = len(always)
            self.cv_how_ += (f" ({n} item{'' if n == 1 else 's'} of labels with fewer than {folds} items "
                             f"train{'s' if n == 1 else ''} in every fold)")
        splits = [(np.concatenate([pool[tr], always]), pool[te]) for tr, te in splits]
        Cs = sorted(float(c) for c in (self.Cs if Cs is None else Cs))
        losses = np.full(len(Cs), np.inf)
        held_out: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in Cs]  # (logits, targets) per C
        weights_at: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in Cs]
        inits: list[Any] = [None] * len(splits)
        self._steps = len(Cs) * len(splits) + 1
        progress = getattr(self, "_progress", None) or (lambda stage, done, total: None)
        for j, C in enumerate(Cs):  # strong to weak regularisation, each fold warm-started from the last C
            for f, (tr, te) in enumerate(splits):
                progress("fit", j * len(splits) + f, self._steps)
                W, b, _ = self._solve(X[tr], targets[tr], weights[tr], C, init=inits[f], tol=self.cv_tol,
                                      max_iter=min(self.max_iter, 100))
                inits[f] = (W, b)
                weights_at[j].append((W, b))
                held_out[j].append((X[te].astype(np.float64) @ W.T.astype(np.float64) + b, targets[te]))
            # score each C by its held-out log-loss after temperature scaling: calibration is fixed separately,
            # so C is judged on how well it ranks, not on how confident it happens to be
            z = np.concatenate([h[0] for h in held_out[j]])
            t = np.concatenate([h[1] for h in held_out[j]])
            losses[j] = _log_loss(z / _fit_temperature(z, t, self.multilabel_), t, self.multilabel_)
            if j >= 1 and losses[j] > losses[:j].min():
                break  # past the minimum: weaker regularisation only costs more iterations
            if j >= 2 and losses[j - 1] - losses[j] < max(1e-3 * losses[j], 1e-3):
                break  # flat (under a thousandth of a nat): a weaker C changes nothing held-out, and costs more
        self._steps = (j + 1) * len(splits) + 1  # what the search did, and the final fit
        progress("fit", self._steps - 1, self._steps)
        best = int(np.argmin(losses))
        self._cv_init = (np.mean([w for w, _ in weights_at[best]], axis=0), np.mean([b for _, b in weights_at[best]], axis=0))
        z = np.concatenate([h[0] for h in held_out[best]])
        t = np.concatenate([h[1] for h in held_out[best]])
        self.temperature_ = _fit_temperature(z, t, self.multilabel_)
        return Cs[best], {f"{c:g}": float(-v) for c, v in zip(Cs, losses) if np.isfinite(v)}

    def _solve(self, X: np.ndarray, targets: np.ndarray, weights: np.ndarray, C: float,
               init: tuple | None = None, tol: float | None = None,
               max_iter: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """Minimise sum(w * loss) / sum(w) + ||W||^2 / (2 C sum(w)) (scikit-learn's objective over C * sum(w)):
        scipy's L-BFGS-B drives it, the loss and its exact gradient are computed by torch on the device."""
        import torch
        from scipy.optimize import minimize

        dev = _device(self.device)
        n, d = X.shape
        k = targets.shape[1] if self.multilabel_ else len(self.classes_)
        Xt = torch.as_tensor(np.ascontiguousarray(X, np.float32), device=dev)
        wt = torch.as_tensor(weights, dtype=torch.float32, device=dev)
        scale = float(weights.sum())
        if self.multilabel_:
            Y = torch.as_tensor(targets, dtype=torch.float32, device=dev)
        else:
            Y = torch.zeros((n, k), dtype=torch.float32, device=dev)
            Y[torch.arange(n, device=dev), torch.as_tensor(targets, device=dev).long()] = 1.0
        calls = [0]

        def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            calls[0] += 1
            p = torch.as_tensor(theta.astype(np.float32), device=dev)
            W, b = p[: k * d].view(k, d), p[k * d:]
            z = torch.addmm(b, Xt, W.T)
            if self.multilabel_:
                per = torch.nn.functional.binary_cross_entropy_with_logits(z, Y, reduction="none").sum(1)
                P = torch.sigmoid(z)
            else:
                logp = torch.log_softmax(z, dim=1)
                per = -(logp * Y).sum(1)
                P = logp.exp()
            G = (P - Y) * (wt / scale)[:, None]
            gW = G.T @ Xt + W / (C * scale)
            gb = G.sum(0)
            loss = (per * wt).sum() / scale + (W * W).sum() / (2 * C * scale)
            grad = torch.cat([gW.reshape(-1), gb]).double().cpu().numpy()
            return float(loss), grad

        theta0 = np.zeros(k * d + k) if init is None else np.concatenate([init[0].ravel(), init[1]]).astype(np.float64)
        res = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B",
                       options={"maxiter": max_iter or self.max_iter, "gtol": tol or self.tol,
                                "ftol": 64 * np.finfo(float).eps,
                                "maxcor": 20})
        theta = res.x.astype(np.float32)
        return theta[: k * d].reshape(k, d).copy(), theta[k * d:].copy(), int(res.nit)

    # ------------------------------------------------------------------------------------------------ predict
    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = _validate(self, X, reset=False)
        z = np.asarray(X, np.float32) @ self.coef_.T + self.intercept_
        return z[:, 1] - z[:, 0] if len(self.classes_) == 2 and not self.multilabel_ else z

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = _validate(self, X, reset=False)
        z = (np.asarray(X, np.float64) @ self.coef_.T.astype(np.float64) + self.intercept_) / self.temperature_
        return 1.0 / (1.0 + np.exp(-z)) if self.multilabel_ else _softmax(z)

    def predict(self, X: Any) -> np.ndarray:
        p = self.predict_proba(X)
        if self.multilabel_:
            return (p >= 0.5).astype(int)
        return self.classes_[p.argmax(1)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.classifier_tags.multi_label = True
        return tags


def _log_loss(z: np.ndarray, targets: np.ndarray, multilabel: bool, smoothing: float = 0.0) -> float:
    """Mean log-loss of logits ``z`` (the CV score: smoother than accuracy on small folds); ``smoothing`` (single
    label): that share of each target spread evenly over the labels."""
    if multilabel:
        return float(np.mean(np.logaddexp(0, z) - targets * z))
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    own = logp[np.arange(len(targets)), targets]
    return float(-(own if not smoothing else (1 - smoothing) * own + smoothing * logp.mean(1)).mean())


def _fit_temperature(z: np.ndarray, targets: np.ndarray, multilabel: bool) -> float:
    """Temperature scaling (Guo et al. 2017): the T minimising held-out log-loss of z / T. Argmax is unchanged."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(5.0), 61))
    return float(grid[int(np.argmin([_log_loss(z / t, targets, multilabel) for t in grid]))])


def fit_temperature(z: np.ndarray, targets: np.ndarray) -> float:
    """The temperature dividing single-label logits ``z`` that minimises their log-loss on ``targets`` (label
    indices): for a head that calibrates on held-out logits of its own (``self_training``)."""
    return _fit_temperature(z, targets, False)


class _CosineBase(ClassifierMixin, BaseEstimator):
    """Shared by the cosine heads: labels -> indices, L2-normalised float32 features."""

    def _prepare_fit(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        _require_y(self, y)
        X, y = _validate(self, X, y)
        if y.ndim == 2:
            if y.shape[1] != 1:
                raise ValueError(f"{type(self).__name__} takes one label per item; use LinearProbe for multi-label")
            import warnings

            from sklearn.exceptions import DataConversionWarning

            warnings.warn("A column-vector y was passed when a 1d array was expected; it was raveled",
                          DataConversionWarning, stacklevel=3)
            y = y.ravel()
        check_classification_targets(y)
        enc = LabelEncoder().fit(y)
        self.classes_ = enc.classes_
        return _unit(X), enc.transform(y)

    def _features(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return _unit(_validate(self, X, reset=False))

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return self.classes_[self.predict_proba(X).argmax(1)]


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.array(X, dtype=np.float32, order="C", copy=True)
    n = np.linalg.norm(X, axis=1, keepdims=True)
    n[n == 0] = 1.0
    return X / n


class CentroidHead(_CosineBase):
    """Cosine nearest centroid. ``temperature`` multiplies the cosine similarities before the softmax (an inverse
    temperature: larger is sharper; unlike LinearProbe's ``temperature_``, which divides its logits): "auto"
    fits it by the log-loss of each training item against the centroids with the item itself left out of its own,
    and one item left out of every other label's (labels with a single item cannot be scored so and are skipped),
    the targets keeping 1 / (n + 2) spread over the labels (n scored items all right do not make it certain); with
    one item per label there is nothing to fit it on and it is ``UNFIT_TEMPERATURE``."""

    UNFIT_TEMPERATURE = 10.0

    def __init__(self, temperature: Any = "auto"):
        self.temperature = temperature

    def fit(self, X: Any, y: Any) -> "CentroidHead":
        X, yi = self._prepare_fit(X, y)
        k = len(self.classes_)
        from scipy.sparse import csr_matrix

        # per-label sums as one sparse product (np.add.at is an order of magnitude slower at 100k rows)
        S = np.asarray(csr_matrix((np.ones(len(yi)), (yi, np.arange(len(yi)))), shape=(k, len(yi))) @ X.astype(np.float64))
        self.centroids_ = _unit(S.astype(np.float32))
        if self.temperature == "auto":
            self.temperature_ = self._loo_temperature(X, yi, S)
        elif _positive_number(self.temperature):
            self.temperature_ = float(self.temperature)
        else:
            raise ValueError(f"temperature must be 'auto' or a positive number, got {self.temperature!r}")
        return self

    def _loo_temperature(self, X: np.ndarray, yi: np.ndarray, S: np.ndarray) -> float:
        from scipy.optimize import minimize_scalar

        counts = np.bincount(yi, minlength=len(S))
        rows = np.flatnonzero(counts[yi] > 1)
        if len(rows) == 0:
            return self.UNFIT_TEMPERATURE
        if len(rows) > 20_000:  # one number to fit: a fixed sample of the items is as good, and cheaper
            rows = np.sort(np.random.default_rng(0).choice(rows, 20_000, replace=False))
        # every label's centroid without one of its items: as noisy as the item's own left-out centroid, so the
        # item's own label is not handicapped against the others (with two items per label, the own "centroid" is a
        # single item, and against whole centroids the fit came out far too unsure). Which item is left out is
        # chance: a few draws (fixed seeds) when the items are few, so the fit does not hang on one of them.
        own = S[yi[rows]] - X[rows]  # the item's own centroid without it
        own_sim = (X[rows] * own).sum(1) / np.maximum(np.linalg.norm(own, axis=1), 1e-12)
        blocks = []
        for draw in range(max(1, min(5, 20_000 // len(rows)))):
            order = np.random.default_rng(draw).permutation(len(yi))
            labels, first = np.unique(yi[order], return_index=True)  # a random item of each label, in one pass
            drop = order[first[counts[labels] > 1]]
            S_out = S.copy()
            S_out[yi[drop]] -= X[drop]
            sims = (X[rows] @ _unit(S_out.astype(np.float32)).T).astype(np.float64)
            sims[np.arange(len(rows)), yi[rows]] = own_sim
            blocks.append(sims)
        sims, truth = np.concatenate(blocks), np.tile(yi[rows], len(blocks))
        # n left-out items all scored right do not make the head certain (rule of succession): the targets keep
        # 1 / (n + 2) spread over the labels, so a few separable items give a finite temperature, not the bound
        # (4 items came out at 275, and every guess at confidence 1.0, which leaves `suggest` no least sure)
        alpha = 1.0 / (len(rows) + 2)
        res = minimize_scalar(lambda lt: _log_loss(sims * np.exp(lt), truth, False, alpha),
                              bounds=(0.0, np.log(1000.0)), method="bounded")
        return float(np.exp(res.x))

    def predict_proba(self, X: Any) -> np.ndarray:
        return _softmax(self._features(X) @ self.centroids_.T * self.temperature_)


class KNNHead(_CosineBase):
    """Cosine k-nearest neighbours (similarity-weighted votes) served by a FAISS inner-product index.
    ``n_neighbors="auto"`` chooses k among ``ks`` by leave-one-out accuracy on (a sample of) the training set. The
    same leave-one-out votes calibrate the probabilities: vote shares ** ``sharpness_``, renormalised, mixed with a
    uniform distribution of weight ``smoothing_`` (``_calibrate_votes``; it never changes the winning label).

    On its own it keeps the training vectors in an exact flat index. ``serve_from(searcher)`` hands the neighbour
    search to another index instead (a store serves a head from its space's index, restricted to the training
    items): ``searcher(Q, k) -> (similarities, rows into the training set)``, -1 where fewer than k were found."""

    def __init__(self, n_neighbors: Any = "auto", ks: Any = (1, 3, 5, 10, 20, 50), loo_max_rows: int = 5000,
                 random_state: int = 0):
        self.n_neighbors = n_neighbors
        self.ks = ks
        self.loo_max_rows = loo_max_rows
        self.random_state = random_state

    def fits_on(self, n: int) -> bool:
        """Whether ``n`` training items are enough: a fixed k needs more than k (each is scored against the others)."""
        return self.n_neighbors == "auto" or n > self.n_neighbors

    def fit(self, X: Any, y: Any) -> "KNNHead":
        X, yi = self._prepare_fit(X, y)
        if self.n_neighbors != "auto":
            k = self.n_neighbors
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
                raise ValueError(f"n_neighbors must be 'auto' or a whole number >= 1, got {k!r}")
            if not self.fits_on(len(X)):
                raise ValueError(f"n_neighbors={k} needs more than {k} training items (each is scored against the "
                                 f"others), there are {len(X)}; choose fewer or 'auto'")
        self.fit_X_, self.fit_y_ = X, yi
        self._index = None
        ks = (sorted(k for k in self.ks if k < len(X)) or [1]) if self.n_neighbors == "auto" else [int(self.n_neighbors)]
        # leave one out on (a sample of) the training items: k by accuracy, then how much to smooth the votes
        rows = np.random.default_rng(self.random_state).permutation(len(X))[: self.loo_max_rows]
        while True:
            sims, nbrs = self._search(X[rows], max(ks) + 1)
            own = nbrs == rows[:, None]  # drop the item itself (wherever an approximate index ranked it), else the last
            drop = np.where(own.any(1), own.argmax(1), nbrs.shape[1] - 1)
            keep = np.arange(nbrs.shape[1])[None, :] != drop[:, None]
            sims, nbrs = sims[keep].reshape(len(rows), -1), nbrs[keep].reshape(len(rows), -1)
            votes = [self._vote(sims[:, :k], nbrs[:, :k]) for k in ks]
            acc = [float((v.argmax(1) == yi[rows]).mean()) for v in votes]
            best = int(np.argmax(acc))
            # the largest k of the grid won: the best may lie beyond it, so the grid goes on, doubling
            if self.n_neighbors != "auto" or best < len(ks) - 1 or len(ks) < 2 or 2 * ks[-1] >= min(len(X), K_MAX):
                break
            ks = ks + [2 * ks[-1]]
        self.n_neighbors_ = ks[best]
        self.cv_scores_ = dict(zip(map(str, ks), acc)) if self.n_neighbors == "auto" else {}
        self.sharpness_, self.smoothing_ = _fit_vote_calibration(votes[best], yi[rows])
        return self

    def serve_from(self, searcher: Any) -> "KNNHead":
        self._searcher = searcher
        return self

    def _search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        if getattr(self, "_searcher", None) is not None:
            return self._searcher(np.ascontiguousarray(Q, np.float32), min(k, len(self.fit_y_)))
        if getattr(self, "_index", None) is None:
            self._index = faiss.IndexFlatIP(self.fit_X_.shape[1])
            self._index.add(self.fit_X_)
        sims, nbrs = self._index.search(np.ascontiguousarray(Q, np.float32), min(k, len(self.fit_X_)))
        return sims, nbrs

    def _vote(self, sims: np.ndarray, nbrs: np.ndarray) -> np.ndarray:
        votes = np.zeros((len(sims), len(self.classes_)), np.float64)
        found = nbrs >= 0  # an approximate index may return fewer than k
        w = np.where(found, np.maximum(sims, 0) + 1e-6, 0.0)
        np.add.at(votes, (np.repeat(np.arange(len(sims)), nbrs.shape[1]), self.fit_y_[np.where(found, nbrs, 0)].ravel()),
                  w.ravel())
        empty = votes.sum(1) == 0
        votes[empty] = 1.0  # nothing found: every label equally likely
        return votes / votes.sum(1, keepdims=True)

    def predict_proba(self, X: Any) -> np.ndarray:
        sims, nbrs = self._search(self._features(X), self.n_neighbors_)
        # heads saved before the calibration was fitted: raw vote shares
        return _calibrate_votes(self._vote(sims, nbrs), float(getattr(self, "sharpness_", 1.0)),
                                float(getattr(self, "smoothing_", 0.0)))

    def __getstate__(self) -> dict:  # the FAISS index is rebuilt on demand, never serialised
        state = self.__dict__.copy()
        state["_index"] = None
        state.pop("_searcher", None)
        return state


def _calibrate_votes(shares: np.ndarray, beta: float, eps: float) -> np.ndarray:
    """Vote shares -> probabilities: sharpened (beta > 1) or softened (beta < 1) as shares ** beta, renormalised,
    then mixed with a uniform distribution (weight eps), so that a label no neighbour voted for is unlikely, not
    impossible. Both are monotone within a row: the winning label never changes."""
    p = np.power(shares, beta)
    p /= p.sum(1, keepdims=True)
    return (1 - eps) * p + eps / shares.shape[1]


def _fit_vote_calibration(shares: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(beta, eps) of ``_calibrate_votes`` that minimise the log-loss of held-out (leave-one-out) vote shares."""
    from scipy.optimize import minimize

    rows = np.arange(len(y))

    def params(t: np.ndarray) -> tuple[float, float]:  # log beta in [log 0.05, log 20], logit eps in [-14, 7]
        return float(np.exp(np.clip(t[0], -3.0, 3.0))), float(1 / (1 + np.exp(-np.clip(t[1], -14.0, 7.0))))

    def loss(t: np.ndarray) -> float:
        p = _calibrate_votes(shares, *params(t))
        return float(-np.mean(np.log(p[rows, y])))

    return params(minimize(loss, np.array([0.0, -4.0]), method="Nelder-Mead",
                           options={"xatol": 1e-4, "fatol": 1e-7}).x)


def _positive_number(v: Any) -> bool:
    """A number above 0, numpy's included; not a bool (True would silently be 1)."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) and v > 0


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)

