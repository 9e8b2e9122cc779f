"""The heads are scikit-learn estimators: they pass sklearn's own estimator checks, and fit what they claim to."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import check_estimator

from embstore.estimators import DEFAULT_CS, CentroidHead, KNNHead, LinearProbe, _calibrate_votes, _fit_vote_calibration

# Exact weight/repetition equivalence (rtol 1e-7) needs a float64 solver run to machine precision; LinearProbe
# solves in float32 to tol, and its C="auto" draws CV folds over rows, so repeated rows change the folds.
WEIGHT_EQUIVALENCE = {"check_sample_weight_equivalence_on_dense_data": "float32 solver; CV folds are drawn over rows"}


@pytest.mark.parametrize("estimator, expected_failed", [
    (LinearProbe(C=1.0, device="cpu"), WEIGHT_EQUIVALENCE),
    (LinearProbe(device="cpu"), WEIGHT_EQUIVALENCE),
    (KNNHead(), {}),
    (CentroidHead(), {}),
], ids=["probe-fixed-C", "probe-auto-C", "knn", "centroid"])
def test_sklearn_estimator_checks(estimator, expected_failed):
    results = check_estimator(estimator, on_fail=None, expected_failed_checks=expected_failed)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert failed == []


def blobs(n=600, d=32, k=4, seed=0, spread=1.5):
    centers = np.random.default_rng(99).standard_normal((k, d))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return (centers[y] + spread * rng.standard_normal((n, d))).astype(np.float32), y


def test_probe_matches_sklearn_logistic_regression_at_the_same_C():
    X, y = blobs()
    Xt, yt = blobs(seed=1)
    # both solved tightly: the same objective gives the same answer
    ours = LinearProbe(C=0.5, device="cpu", tol=1e-7, max_iter=5000, calibrate=False).fit(X, y)
    stock = LogisticRegression(C=0.5, max_iter=5000, tol=1e-10).fit(X, y)
    assert np.abs(ours.coef_ - stock.coef_).max() < 2e-2
    assert (ours.predict(Xt) == stock.predict(Xt)).mean() >= 0.99
    assert ours.temperature_ == 1.0 and np.abs(ours.predict_proba(Xt) - stock.predict_proba(Xt)).max() < 2e-2
    # calibrated (the default), at the same fixed C: the same weights, a fitted temperature
    calibrated = LinearProbe(C=0.5, device="cpu", tol=1e-7, max_iter=5000).fit(X, y)
    assert np.abs(calibrated.coef_ - ours.coef_).max() < 5e-3 and calibrated.temperature_ != 1.0
    assert (calibrated.predict(Xt) == ours.predict(Xt)).all()
    # a numpy number is a number; a bool is not (C=True would silently be C=1)
    assert LinearProbe(C=np.int64(2), device="cpu", calibrate=False).fit(X, y).C_ == 2.0
    with pytest.raises(ValueError, match="C must be 'auto' or a positive number, got True"):
        LinearProbe(C=True, device="cpu").fit(X, y)


def test_probe_chooses_C_by_cross_validation_and_calibrates():
    X, y = blobs(spread=3.0)
    probe = LinearProbe(device="cpu").fit(X, y)
    assert probe.C_ in DEFAULT_CS
    scores = probe.cv_scores_
    assert scores[f"{probe.C_:g}"] == max(scores.values())
    assert 0.05 <= probe.temperature_ <= 5.0
    p = probe.predict_proba(blobs(seed=2, spread=3.0)[0])
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)


def test_probe_multilabel_and_class_weight():
    X, y = blobs(k=3)
    Y = np.stack([y == 0, y != 2, y == 2], axis=1).astype(int)  # two labels can hold at once
    probe = LinearProbe(C=1.0, device="cpu").fit(X, Y)
    assert probe.multilabel_ and probe.predict(X).shape == Y.shape
    assert (probe.predict(X) == Y).all(axis=1).mean() > 0.9
    # a rare label gets more recall with balanced weights
    keep = np.r_[np.flatnonzero(y != 0), np.flatnonzero(y == 0)[:12]]
    Xi, yi = X[keep], y[keep]
    plain = LinearProbe(C=0.05, device="cpu").fit(Xi, yi)
    balanced = LinearProbe(C=0.05, device="cpu", class_weight="balanced").fit(Xi, yi)
    Xt, yt = blobs(seed=3, k=3)
    recall = lambda m: (m.predict(Xt[yt == 0]) == 0).mean()
    assert recall(balanced) > recall(plain)


def test_vote_calibration_recovers_known_parameters():
    rng = np.random.default_rng(0)
    shares = rng.dirichlet(np.full(5, 0.7), size=20_000)
    truth = _calibrate_votes(shares, 2.0, 0.05)
    y = (truth.cumsum(1) > rng.random((len(truth), 1))).argmax(1)  # labels drawn from the true probabilities
    beta, eps = _fit_vote_calibration(shares, y)
    assert beta == pytest.approx(2.0, rel=0.1) and eps == pytest.approx(0.05, abs=0.015)
    assert (_calibrate_votes(shares, beta, eps).argmax(1) == shares.argmax(1)).all()  # never changes the winner


def test_knn_probabilities_are_calibrated_and_never_zero():
    X, y = blobs(n=400, spread=3.0)  # overlapping labels: neighbours disagree
    Xt, yt = blobs(seed=5, spread=3.0)
    knn = KNNHead(n_neighbors=20).fit(X, y)
    P = knn.predict_proba(Xt)
    raw = KNNHead(n_neighbors=20).fit(X, y)
    raw.sharpness_, raw.smoothing_ = 1.0, 0.0  # as heads saved before calibration: plain vote shares
    R = raw.predict_proba(Xt)
    assert (P.argmax(1) == R.argmax(1)).all() and P.min() > 0 and (R == 0).any()
    nll = lambda Q: -np.mean(np.log(np.clip(Q[np.arange(len(yt)), yt], 1e-12, 1)))
    assert nll(P) < nll(R)
    del raw.sharpness_, raw.smoothing_
    np.testing.assert_allclose(raw.predict_proba(Xt), R)  # an old head without them still loads and predicts


@pytest.mark.parametrize("n, seed", [(20, 10), (20, 11), (20, 12), (300, 10)])
def test_centroid_temperature_is_fitted_on_left_out_items(n, seed):
    X, y = blobs(n=n, seed=seed, spread=3.0)  # n=20: five items per label, where the training items' own fit says 200
    Xt, yt = blobs(n=3000, seed=7, spread=3.0)
    head = CentroidHead().fit(X, y)
    Z = (Xt / np.linalg.norm(Xt, axis=1, keepdims=True)) @ head.centroids_.T

    def nll(t):
        z = Z * t - (Z * t).max(1, keepdims=True)
        return -np.mean(z[np.arange(len(yt)), yt] - np.log(np.exp(z).sum(1)))

    grid = np.geomspace(1, 1000, 61)
    best = grid[int(np.argmin([nll(t) for t in grid]))]  # what fresh data from the same distribution asks for
    assert best / 2 < head.temperature_ < best * 2
    one_each = [int(np.flatnonzero(y == c)[0]) for c in range(4)]
    assert CentroidHead().fit(X[one_each], y[one_each]).temperature_ == CentroidHead.UNFIT_TEMPERATURE


def test_a_few_separable_items_do_not_make_the_centroid_head_certain():
    """Four items, two per label, far apart: every left-out item is scored right, and plain log-loss would drive the
    temperature to its bound (every guess at 1.0, so `suggest` has no least sure). The fit keeps it finite."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 32)).astype(np.float32) * 0.3
    X[:2, 0] += 2.0
    X[2:, 1] += 2.0  # (before: temperature 173, and 1.0 for every item)
    y = np.array(["a", "a", "b", "b"])
    head = CentroidHead().fit(X, y)
    Xn = rng.standard_normal((50, 32)).astype(np.float32) * 0.3
    Xn[np.arange(50), rng.integers(0, 2, 50)] += 2.0
    P = head.predict_proba(Xn)
    assert head.temperature_ < 50 and P.max() < 0.999 and len(np.unique(np.round(P.max(1), 4))) > 10
    assert (head.predict(X) == y).all()


def test_centroid_temperature_at_two_items_per_label_is_not_handicapped_by_the_own_label():
    """Two items per label, embedding-like vectors (a direction all share, then the label's, then noise): the fitted
    temperature lands nearer the one fresh data asks for than the rule that left the item out of its own centroid
    only (that rule made the own label a single item against whole centroids, and came out too unsure)."""
    from scipy.optimize import minimize_scalar

    from embstore.estimators import _log_loss

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def best_log_t(sims, y):
        return minimize_scalar(lambda lt: _log_loss(sims * np.exp(lt), y, False), bounds=(0, np.log(1000)),
                               method="bounded").x

    new, old = [], []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        common, means = unit(rng.standard_normal((1, 64))), unit(rng.standard_normal((20, 64)))

        def draw(per_label):
            y = np.repeat(np.arange(20), per_label)
            return unit(common + 0.6 * means[y] + rng.standard_normal((len(y), 64)) / 8).astype(np.float32), y

        (X, y), (Xt, yt) = draw(2), draw(200)
        head = CentroidHead().fit(X, y)
        target = best_log_t((unit(Xt) @ head.centroids_.T).astype(np.float64), yt)
        S = np.zeros((20, 64))
        np.add.at(S, y, X)
        sims = X @ unit(S).T
        sims[np.arange(len(y)), y] = (X * unit(S[y] - X)).sum(1)  # the old rule: only the own centroid leaves it out
        new.append(abs(np.log(head.temperature_) - target))
        old.append(abs(best_log_t(sims, y) - target))
    assert np.mean(new) < 0.45 and np.mean(new) < np.mean(old) - 0.1, (np.mean(new), np.mean(old))


def test_one_rare_label_does_not_switch_the_search_for_C_off():
    X, y = blobs(n=600, spread=3.0)
    X, y = np.vstack([X, X[:1] + 0.01]), np.r_[y, 4]  # a fifth label with a single item
    probe = LinearProbe(device="cpu").fit(X, y)
    assert len(probe.cv_scores_) >= 2 and 4 in probe.classes_  # the search ran (it stops once held-out loss rises)
    assert probe.cv_how_ == "3-fold stratified CV over 600 rows (1 item of labels with fewer than 3 items trains in every fold)"
    tiny = LinearProbe(device="cpu").fit(X[[0, 1, 2, 3]], [0, 0, 1, 2])  # no label can be held out twice
    assert tiny.C_ == 1.0 and tiny.cv_scores_ == {} and tiny.cv_how_.startswith("none")


def test_knn_k_search_goes_past_the_grid_while_its_largest_k_wins():
    """Noisy labels (30% flipped) reward a large k: the search doubles k past the grid's 50 until the leave-one-out
    accuracy stops rising, and the k it finds beats the grid's largest on the true test labels."""
    X, y = blobs(n=2000, k=2, spread=2.0, seed=3)
    Xt, yt = blobs(n=2000, k=2, spread=2.0, seed=4)
    noisy = np.where(np.random.default_rng(5).random(len(y)) < 0.3, 1 - y, y)
    knn = KNNHead().fit(X, noisy)
    assert knn.n_neighbors_ == 100 and list(knn.cv_scores_) == ["1", "3", "5", "10", "20", "50", "100", "200"]
    assert knn.cv_scores_["200"] < knn.cv_scores_["100"]  # where it stopped
    at_50 = KNNHead(n_neighbors=50).fit(X, noisy)
    assert (knn.predict(Xt) == yt).mean() > (at_50.predict(Xt) == yt).mean() + 0.01


def test_knn_and_centroid_learn_from_few_examples():
    X, y = blobs(n=400)
    Xt, yt = blobs(seed=5)
    knn = KNNHead().fit(X, y)
    assert knn.n_neighbors_ in (1, 3, 5, 10, 20, 50)
    assert (knn.predict(Xt) == yt).mean() > 0.9
    one_each = [int(np.flatnonzero(y == c)[0]) for c in range(4)]
    centroid = CentroidHead().fit(X[one_each], y[one_each])  # one example per label
    assert (centroid.predict(Xt) == yt).mean() > 0.6
    np.testing.assert_allclose(centroid.predict_proba(Xt).sum(1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("n, seed", [(40, 1), (40, 2), (24, 6)])
def test_selftrain_temperature_fits_fresh_items_though_its_guesses_saw_every_label(n, seed):
    """Few labels, many unlabelled items it guesses (hundreds per round): each calibration fold repeats the
    self-training without its held-out labels, so the temperature is near what fresh items ask for. A temperature
    from fits on the full head's guesses (which carry the held-out labels) was 5-100x too sharp on these."""
    from embstore.self_training import SelfTrainingHead

    X, y = blobs(n=n, seed=seed, spread=3.0)
    U, _ = blobs(n=3000, seed=seed + 100, spread=3.0)
    Xt, yt = blobs(n=3000, seed=7, spread=3.0)
    head = SelfTrainingHead(device="cpu").fit(X, y, unlabelled=U)
    assert head.pseudo_labelled_[0] > 100
    Z = Xt.astype(np.float64) @ head.coef_.T + head.intercept_

    def nll(t):
        z = Z / t - (Z / t).max(1, keepdims=True)
        return -np.mean(z[np.arange(len(yt)), yt] - np.log(np.exp(z).sum(1)))

    grid = np.geomspace(0.05, 100, 121)
    best = grid[int(np.argmin([nll(t) for t in grid]))]
    assert best / 2.5 < head.temperature_ < best * 2.5


def test_selftrain_guesses_only_when_every_label_has_min_per_label_items():
    """Two labels with 8 labelled items, one with 2, all separable: with the default (3) it is logreg; with
    min_per_label=2 it guesses, and every label keeps its items (guessing only into the labels with enough items
    starved the third: it was never predicted)."""
    from embstore.self_training import SelfTrainingHead

    X, y = blobs(n=3000, seed=3, spread=0.3, k=3)
    rows = np.concatenate([np.flatnonzero(y == 0)[:8], np.flatnonzero(y == 1)[:8], np.flatnonzero(y == 2)[:2]])
    U, yu = np.delete(X, rows, axis=0), np.delete(y, rows)
    closed = SelfTrainingHead(device="cpu").fit(X[rows], y[rows], unlabelled=U)
    plain = LinearProbe(device="cpu").fit(X[rows], y[rows])
    assert closed.pseudo_labelled_ == [] and np.allclose(closed.coef_, plain.coef_)
    assert closed.temperature_ == plain.temperature_
    loose = SelfTrainingHead(device="cpu", min_per_label=2).fit(X[rows], y[rows], unlabelled=U)
    assert loose.pseudo_labelled_[0] > 2000 and (loose.predict(U) == yu).mean() > 0.99
