"""How good a head is: metrics (accuracy, macro-F1, per-label precision/recall, confusion, calibration), the MTEB
few-shot protocol, and pictures of both."""
from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

import numpy as np

from .errors import InputError, LabelError


def jsonable(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def calibration(proba: np.ndarray, y_idx: np.ndarray, bins: int = 15) -> dict[str, float]:
    """Expected calibration error (top-label, equal-width bins), log-loss and Brier score."""
    conf = proba.max(1)
    correct = (proba.argmax(1) == y_idx).astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = sum(abs(correct[which == b].mean() - conf[which == b].mean()) * (which == b).mean()
              for b in range(bins) if (which == b).any())
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(y_idx)), y_idx] = 1
    p_true = np.clip(proba[np.arange(len(y_idx)), y_idx], 1e-12, 1.0)
    return {"ece": float(ece), "log_loss": float(-np.log(p_true).mean()),
            "brier": float(((proba - onehot) ** 2).sum(1).mean())}


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> list[float]:
    """95% Wilson score interval of a proportion (``correct`` of ``n``): right at small n and near 0 or 1, where
    the normal approximation is not."""
    if n <= 0:
        return [0.0, 1.0]
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def macro_f1_interval(matrix: Any, draws: int = 1000, seed: int = 0, chunk: int = 100) -> list[float]:
    """95% bootstrap interval of macro-F1 from a confusion matrix. Resampling the test items with replacement is a
    multinomial draw over the matrix's cells, so only the non-empty cells are drawn (cheap for any test size).
    Macro-F1 of each draw is over the labels that occur in it as truth or prediction, as scikit-learn's is. With every
    test item right the bootstrap is degenerate, and the accuracy's Wilson interval is returned instead."""
    m = np.asarray(matrix, dtype=np.int64)
    n = int(m.sum())
    if n == 0:
        return [0.0, 1.0]
    if int(np.trace(m)) == n:  # every item right: no resample can draw an error that never happened, so the
        return wilson_interval(n, n)  # bootstrap says [1, 1]; the accuracy's interval says how sure n items make us
    from scipy.sparse import csr_matrix

    r, c = np.nonzero(m)
    p = m[r, c] / n
    k, cells = m.shape[0], np.arange(len(r))
    # each non-empty cell counts towards its true label, its predicted label, and (on the diagonal) a true positive
    onehot = {name: csr_matrix((np.ones(int(keep.sum())), (cells[keep], idx[keep])), shape=(len(r), k))
              for name, idx, keep in (("true", r, r >= 0), ("pred", c, c >= 0), ("tp", r, r == c))}
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, draws, chunk):
        counts = rng.multinomial(n, p, size=min(chunk, draws - start)).astype(np.float64)  # draws x cells
        true, pred, tp = ((onehot[name].T @ counts.T).T for name in ("true", "pred", "tp"))
        both = true + pred
        present = both > 0
        f1 = np.divide(2 * tp, both, out=np.zeros_like(tp), where=present)
        out.append(f1.sum(1) / present.sum(1))
    lo, hi = np.percentile(np.concatenate(out), [2.5, 97.5])
    return [float(lo), float(hi)]


def paired_comparison(this: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """Two heads scored on the same test items (bool arrays, item by item): how many items only one of them gets
    right, and the exact McNemar test's two-sided p-value (a binomial test on those items). A small p (say < 0.05)
    says the difference is more than the luck of which items were in the test set."""
    from scipy.stats import binomtest

    b = int((this & ~other).sum())
    c = int((~this & other).sum())
    return {"only_this_right": b, "only_other_right": c,
            "p_value": float(binomtest(b, b + c).pvalue) if b + c else 1.0}


def evaluate(est: Any, X: np.ndarray, y: list[Any], classes: Sequence[Any], multilabel: bool = False,
             outcomes: bool = False) -> Any:
    """Scores of a fitted head on (X, y). ``classes`` are the head's label names, in its column order. With
    ``outcomes``, returns (scores, a bool array: was each item right, every label of it for multi-label)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(classes)
    if multilabel:
        from sklearn.preprocessing import MultiLabelBinarizer

        unknown = sorted({v for row in y for v in row} - set(labels), key=str)
        refuse_unknown_labels(unknown)
        Y = MultiLabelBinarizer(classes=labels).fit_transform(y)
        P = est.predict(X)
        p, r, f, s = precision_recall_fscore_support(Y, P, zero_division=0)
        right = (np.asarray(Y) == np.asarray(P)).all(1)
        scores = {"accuracy": float(accuracy_score(Y, P)),  # subset accuracy: every label of the item right
                  "accuracy_ci95": wilson_interval(int(right.sum()), len(y)),
                  "macro_f1": float(f1_score(Y, P, average="macro", zero_division=0)),
                  "micro_f1": float(f1_score(Y, P, average="micro", zero_division=0)),
                  "per_label": _per_label(labels, p, r, f, s, np.asarray(P).sum(0)), "n_test": len(y)}
        return (scores, right) if outcomes else scores
    unknown = sorted({v for v in y} - set(labels), key=str)
    refuse_unknown_labels(unknown)
    proba = est.predict_proba(X)
    pred = np.asarray(labels)[proba.argmax(1)]  # labels are all ints or all strings: a plain numpy dtype
    y_obj = np.asarray(y)
    index = {c: i for i, c in enumerate(labels)}
    p, r, f, s = precision_recall_fscore_support(y_obj, pred, labels=labels, zero_division=0)
    right = pred == y_obj
    matrix = confusion_matrix(y_obj, pred, labels=labels)
    scores = {
        "accuracy": float(accuracy_score(y_obj, pred)),
        "accuracy_ci95": wilson_interval(int(right.sum()), len(y)),
        # macro-F1 over the labels that occur in the test set or in the predictions (scikit-learn's default):
        # a trained label with no test item is not a zero
        "macro_f1": float(f1_score(y_obj, pred, average="macro", zero_division=0)),
        "macro_f1_ci95": macro_f1_interval(matrix),
        "per_label": _per_label(labels, p, r, f, s, matrix.sum(0)),
        "confusion": {"labels": [jsonable(c) for c in labels], "matrix": matrix.tolist()},
        "calibration": calibration(proba, np.asarray([index[v] for v in y])),
        "n_test": len(y),
    }
    return (scores, right) if outcomes else scores


def refuse_unknown_labels(unknown: list[Any]) -> None:
    """A test label the head never trained on cannot be predicted: refused, rather than scored as always wrong."""
    if unknown:
        raise LabelError(f"the test set has labels the head never saw in training: {unknown[:10]}; "
                         "add training examples for them or drop those rows")


def _per_label(labels: list[Any], p: Any, r: Any, f: Any, s: Any, predicted: Any) -> dict[str, dict[str, float]]:
    return {str(c): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i]),
                     "predicted": int(predicted[i])} for i, c in enumerate(labels)}


# ------------------------------------------------------------------------------------------------- few-shot
def parse_samples(spec: str | Sequence[Any]) -> list[int | str]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[int | str] = []
    for item in items:
        item = str(item).strip().lower()
        if item == "all":
            out.append("all")
        elif item.isdigit() and int(item) > 0:
            out.append(int(item))
        else:
            raise InputError(f"samples per label must be positive integers or 'all', got {item!r} (e.g. 1,2,4,8,all)")
    return list(dict.fromkeys(out))  # each n once, in the order given


def undersample(y: np.ndarray, n: int, rng: np.random.RandomState, idxs: np.ndarray | None = None) -> np.ndarray:
    """MTEB's undersampling: shuffle the (persistent) index array in place, keep the first ``n`` items per label."""
    idxs = np.arange(len(y)) if idxs is None else idxs
    rng.shuffle(idxs)
    taken: dict[Any, int] = {}
    keep = []
    for i in idxs:
        if taken.get(y[i], 0) < n:
            taken[y[i]] = taken.get(y[i], 0) + 1
            keep.append(i)
    return np.asarray(keep)


def few_shot(Xtr: np.ndarray, ytr: Sequence[Any], Xte: np.ndarray, yte: Sequence[Any],
             samples: Sequence[int | str] = (1, 2, 4, 8, 16, 32, "all"), repeats: int = 10, seed: int = 42,
             max_iter: int = 100, progress: Any = None) -> list[dict[str, Any]]:
    """MTEB classification protocol: for each n, ``repeats`` times undersample the train split to n per label
    (a RandomState(seed) per n, so each n's runs do not depend on which other n were asked for), fit
    LogisticRegression(max_iter=100), score accuracy and macro-F1 on the whole test split.
    ``progress(stage, done, total)`` counts the runs."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    ytr, yte = np.asarray([str(v) for v in ytr]), np.asarray([str(v) for v in yte])
    if len(set(ytr)) < 2:
        raise LabelError("few-shot evaluation needs at least 2 labels in the training split")
    most = int(np.unique(ytr, return_counts=True)[1].max())
    out = []
    total = sum(1 if n == "all" else repeats for n in samples)
    done = 0
    for n in samples:
        rng, idxs = np.random.RandomState(seed), np.arange(len(ytr))
        accs, f1s, sizes, stopped = [], [], [], 0
        for _ in range(1 if n == "all" else repeats):
            if progress is not None:
                progress("runs", done, total)
            done += 1
            rows = np.arange(len(ytr)) if n == "all" else undersample(ytr, int(n), rng, idxs)
            if len(set(ytr[rows])) < 2:
                continue
            with warnings.catch_warnings():  # the protocol stops at max_iter=100 by design: counted, not printed
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf = LogisticRegression(max_iter=max_iter).fit(Xtr[rows], ytr[rows])
            stopped += int(np.max(clf.n_iter_) >= max_iter)
            pred = clf.predict(Xte)
            accs.append(float((pred == yte).mean()))
            f1s.append(float(f1_score(yte, pred, average="macro", zero_division=0)))
            sizes.append(len(rows))
        out.append({"samples_per_label": n, "runs": len(accs), "train_size": int(sizes[0]) if len(set(sizes)) == 1 else float(np.mean(sizes)),
                    # no label has more than n items: every run trains on all of them, so the runs are the same
                    "every_item": n == "all" or int(n) >= most,
                    "stopped_at_max_iter": stopped,
                    "accuracy_mean": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
                    "macro_f1_mean": float(np.mean(f1s)), "macro_f1_std": float(np.std(f1s))})
    if progress is not None:
        progress("runs", total, total)
    return out


# ------------------------------------------------------------------------------------------------- pictures
def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise InputError("plots need matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _wrap(title: str, width: float) -> str:
    """A title in lines that fit the figure (about ``width`` characters each), not cut at its edges."""
    import textwrap

    return "\n".join(textwrap.wrap(title, int(width))) or title


def plot_confusion(metrics: dict[str, Any], path: str | os.PathLike, title: str) -> str:
    plt = _pyplot()
    labels = [str(c) for c in metrics["confusion"]["labels"]]
    m = np.asarray(metrics["confusion"]["matrix"], dtype=np.float64)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = max(4.5, 0.45 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 25:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(f"{_wrap(title, 8 * size)}\naccuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true label")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def plot_learning_curve(points: list[dict[str, Any]], path: str | os.PathLike, title: str,
                        x_key: str = "train_size", baseline: tuple[str, float] | None = None) -> str:
    """``baseline``: (its name, its accuracy), drawn as a dashed line across (zero-shot: no training items)."""
    plt = _pyplot()
    xs = np.array([p[x_key] for p in points], dtype=np.float64)
    mean = np.array([p["accuracy_mean"] for p in points])
    std = np.array([p.get("accuracy_std", 0.0) for p in points])
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(xs, mean, marker="o")
    ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
    below = False
    for i, (p, x, y) in enumerate(zip(points, xs, mean)):
        below = i > 0 and x < 1.5 * xs[i - 1] and not below  # a close neighbour's label is above: this one below
        ax.annotate(str(p.get("samples_per_label", "")), (x, y), textcoords="offset points",
                    xytext=(0, -12 if below else 6), ha="center", fontsize=8)
    if baseline is not None:
        ax.axhline(baseline[1], linestyle="--", color="grey", label=f"{baseline[0]}: {baseline[1]:.3f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter

    ticks: list[float] = []
    for x in sorted(set(xs.tolist())):  # at the sizes measured, in plain numbers, none crowding the last
        if not ticks or x >= 1.25 * ticks[-1]:
            ticks.append(x)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelrotation=45 if len(ticks) > 6 else 0, labelsize=8)
    ax.set_xlabel("training items" + (" (labels: items per label)" if "samples_per_label" in points[0] else ""))
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(_wrap(title, 60), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
