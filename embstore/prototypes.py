"""Heads from label names: zero-shot (text prototypes, no examples) and few-shot (the prototypes plus a cache of the
labelled examples, as in Tip-Adapter), for spaces whose encoder embeds text: CLIP above all (a text prototype
classifies images), any text encoder too (a label name classifies texts).

A prototype is the normalised mean of the label's prompts' embeddings (``templates``, ``{}`` standing for the
name), CLIP's prompt ensembling. Logits are ``scale * cos(x, prototype)``, ``scale`` the encoder's own logit scale
(CLIP learns about 100) when it has one.

The few-shot head adds Tip-Adapter's cache logits (Zhang et al., 2022, training-free): ``alpha * sum over the label's
examples of exp(-beta * (1 - cos(x, example)))``, with its published defaults alpha = 1, beta = 5.5 (tuned on
ImageNet by the authors, not here). The prototypes stay in every prediction, so no example pulls it far from
zero-shot, and each one adds evidence near itself.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

# CLIP's seven best ImageNet prompts of its 80 (the CLIP repository's prompt-engineering notebook)
IMAGE_TEMPLATES = ("itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
                   "a {} in a video game.", "art of the {}.", "a photo of the small {}.")
TEXT_TEMPLATES = ("{}", "a text about {}.")
DEFAULT_SCALE = 100.0  # CLIP's learned logit scale, for encoders that have none


def templates_for(modality: str, given: Sequence[str] | None = None) -> list[str]:
    """The prompts: those given (each must hold ``{}``), else the defaults for a collection of ``modality``."""
    from .errors import InputError

    if given is not None:
        given = [str(t) for t in given if str(t).strip()]
        bad = [t for t in given if "{}" not in t]
        if not given or bad:
            raise InputError(f"a prompt template must hold {{}} where the label name goes (e.g. 'a photo of a {{}}.'); "
                             f"got {bad[0] if bad else 'none'!r}")
        return given
    return list(IMAGE_TEMPLATES if modality == "image" else TEXT_TEMPLATES)


def label_prototypes(encoder: Any, names: Sequence[Any], templates: Sequence[str]) -> np.ndarray:
    """One unit vector per label name: the normalised mean of its prompts' normalised embeddings."""
    prompts = [t.format(str(n).replace("_", " ")) for n in names for t in templates]
    E = _unit(np.asarray(encoder.encode_text(prompts), np.float32)).reshape(len(names), len(templates), -1)
    return _unit(E.mean(1))


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.where(n > 0, n, 1)).astype(np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


class ZeroShotHead(ClassifierMixin, BaseEstimator):
    """Nearest label prototype. ``prototypes_`` (labels x dim, one row per ``classes_``) are set before ``fit``
    (``set_prototypes``); ``fit`` learns nothing from examples (it checks the labels it is given are its own).

    Parameters: ``scale`` (logit scale; "auto": the encoder's, else 100)."""

    def __init__(self, scale: Any = "auto"):
        self.scale = scale

    def set_prototypes(self, classes: Sequence[Any], prototypes: np.ndarray, encoder_scale: float | None = None
                       ) -> "ZeroShotHead":
        self.classes_ = np.asarray(list(classes), dtype=object)
        self.prototypes_ = _unit(np.asarray(prototypes, np.float32))
        self.scale_ = float(encoder_scale or DEFAULT_SCALE) if self.scale == "auto" else float(self.scale)
        if not self.scale_ > 0:
            raise ValueError(f"scale must be 'auto' or a positive number, got {self.scale!r}")
        self.n_features_in_ = self.prototypes_.shape[1]
        return self

    def fit(self, X: Any, y: Any) -> "ZeroShotHead":
        if not hasattr(self, "prototypes_"):
            raise ValueError("a zero-shot head needs its label prototypes first (set_prototypes)")
        unknown = sorted(set(map(str, y)) - set(map(str, self.classes_)))
        if unknown:
            raise ValueError(f"labels without a prototype: {', '.join(unknown[:5])}")
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        return self.scale_ * (_unit(np.asarray(X, np.float32)) @ self.prototypes_.T)

    def predict_proba(self, X: Any) -> np.ndarray:
        return _softmax(self.decision_function(X).astype(np.float64))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(1)]


class FewShotHead(ZeroShotHead):
    """Zero-shot prototypes plus Tip-Adapter's cache of the labelled examples (training-free).

    Parameters: ``scale`` (as ZeroShotHead), ``alpha`` (weight of the cache, 1.0), ``beta`` (its sharpness, 5.5)."""

    def __init__(self, scale: Any = "auto", alpha: float = 1.0, beta: float = 5.5):
        super().__init__(scale)
        self.alpha = alpha
        self.beta = beta

    def fit(self, X: Any, y: Any) -> "FewShotHead":
        super().fit(X, y)
        if not (float(self.alpha) >= 0 and float(self.beta) > 0):
            raise ValueError(f"alpha must be >= 0 and beta > 0, got alpha={self.alpha!r}, beta={self.beta!r}")
        index = {str(c): j for j, c in enumerate(self.classes_)}
        self.cache_X_ = _unit(np.asarray(X, np.float32))
        self.cache_y_ = np.asarray([index[str(v)] for v in y], np.int64)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        Xn = _unit(np.asarray(X, np.float32))
        z = self.scale_ * (Xn @ self.prototypes_.T)
        if getattr(self, "cache_X_", None) is not None and len(self.cache_X_):
            A = np.exp(-float(self.beta) * (1.0 - Xn @ self.cache_X_.T))
            onehot = np.zeros((len(self.cache_y_), len(self.classes_)), np.float32)
            onehot[np.arange(len(self.cache_y_)), self.cache_y_] = 1
            z = z + float(self.alpha) * (A @ onehot)
        return z


# ------------------------------------------------------------------------------------------------- as heads
MODELS = ("zeroshot", "fewshot")
NOT_ESTIMATOR_PARAMS = ("templates", "label_names")  # a prototype head's params that shape its prompts


def estimator_class(model: str) -> type:
    return {"zeroshot": ZeroShotHead, "fewshot": FewShotHead}[model]


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the estimator's params, the prompts' params: templates and label_names)."""
    return ({k: v for k, v in params.items() if k not in NOT_ESTIMATOR_PARAMS},
            {k: v for k, v in params.items() if k in NOT_ESTIMATOR_PARAMS})


def prototype_setter(store: Any, collection: str, space: str, model: str, classes: Sequence[Any],
                     prompt_params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The label prototypes, embedded once by the space's own encoder: ``(set(est), what the head records of its
    prompts: the templates, and the words each label was prompted with)``."""
    from .errors import InputError

    enc = store.encoder_for(collection, space)
    if "text" not in enc.modalities:
        raise InputError(f"a {model} head prompts its space's encoder with the label names, but {space!r} "
                         f"({enc.spec}) embeds images only; use a CLIP space (open_clip:...) or a text space")
    names_given = prompt_params.get("label_names") or {}
    if not isinstance(names_given, dict):
        raise InputError("label_names maps each label to the words it is prompted with, e.g. {\"0\": \"zero\"}")
    names = [str(names_given.get(str(c), c)) for c in classes]
    templates = templates_for(store.collection(collection)["modality"], prompt_params.get("templates"))
    P = label_prototypes(enc, names, templates)
    scale = getattr(enc.load(), "logit_scale", None)
    return (lambda est: est.set_prototypes(classes, P, scale)), {"templates": templates, "label_names": names}


def state_of(est: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {"prototypes": est.prototypes_}
    if getattr(est, "cache_X_", None) is not None:
        arrays |= {"cache_X": est.cache_X_, "cache_y": est.cache_y_}
    return arrays, {"scale_": est.scale_}


def restore(est: Any, classes: Sequence[Any], arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> Any:
    est.classes_ = np.asarray(list(classes), dtype=object)
    est.prototypes_ = arrays["prototypes"].astype(np.float32)
    est.scale_ = float(scalars["scale_"])
    est.n_features_in_ = est.prototypes_.shape[1]
    if "cache_X" in arrays:
        est.cache_X_, est.cache_y_ = arrays["cache_X"].astype(np.float32), arrays["cache_y"].astype(np.int64)
    return est


def zero_shot_score(store: Any, collection: str, space: str, classes: Sequence[Any], X: np.ndarray,
                    y: Sequence[Any]) -> dict[str, Any]:
    """Accuracy and macro-F1 of a zero-shot head (default prompts, the labels as their own names) on ``X, y``."""
    from sklearn.metrics import f1_score

    setter, prompts = prototype_setter(store, collection, space, "zeroshot", classes, {})
    est = ZeroShotHead()
    setter(est)
    pred = [str(v) for v in est.predict(X)]
    truth = [str(v) for v in y]
    return {"accuracy": float(np.mean([a == b for a, b in zip(pred, truth)])),
            "macro_f1": float(f1_score(truth, pred, average="macro", zero_division=0)),
            "n_test": len(truth), "templates": len(prompts["templates"])}
