"""open_clip encoders: text and images in one space, so a text query finds images.

Spec: ``open_clip:ARCH@PRETRAINED`` (or ``ARCH/PRETRAINED``). ARCH is an open_clip model name or a path to a model
config JSON; PRETRAINED is an open_clip tag (fetched from the hub), a local weights file, or ``random`` (seeded random
initialisation: for tests and throughput runs only).
"""
from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import EncoderError
from .base import Encoder, as_float32, hash_state_dict, hub_cache_only_when_unreachable
from .text import slug


@contextmanager
def quiet_logs() -> Iterator[None]:
    """open_clip logs to the root logger ("ERROR:root:Failed to download weights ..."): the library never prints;
    what went wrong reaches the user as embstore's own one-line error."""
    root, before = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.setLevel(before)


def where_to_get(arch: str, tag: str) -> str:
    """What to download for an open_clip tag, and where to put it (or how to name the file instead)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    repo = (cfg.get("hf_hub") or "").strip("/")
    if repo:
        return (f"on a machine with network run `huggingface-cli download {repo} open_clip_pytorch_model.bin` (it goes "
                f"to the Hugging Face cache, ~/.cache/huggingface/hub, which embstore reads offline; copy that folder "
                f"here), or download https://huggingface.co/{repo} 's open_clip_pytorch_model.bin and name the file: "
                f"open_clip:{arch}@/path/to/open_clip_pytorch_model.bin")
    url = cfg.get("url") or "the weights file of this tag"
    return f"download {url} and name the file: open_clip:{arch}@/path/to/{os.path.basename(url) or 'weights.pt'}"


class OpenClipEncoder(Encoder):
    modalities = frozenset({"text", "image"})
    normalized = True

    def __init__(self, arch: str, pretrained: str | None, device: str = "cpu", spec: str | None = None):
        import open_clip
        import torch

        self.spec = spec or f"open_clip:{arch}@{pretrained}"
        config = None
        if arch.endswith(".json"):
            if not os.path.exists(arch):
                raise EncoderError(f"open_clip config {arch} does not exist")
            with open(arch, encoding="utf-8") as f:
                config = json.load(f)
            open_clip.add_model_config(arch)
            arch = os.path.splitext(os.path.basename(arch))[0]
        elif arch not in open_clip.list_models():
            raise EncoderError(f"unknown open_clip model {arch!r}; see open_clip.list_models() or give a config .json")
        self.arch = arch
        self.pretrained = pretrained
        if not pretrained:
            raise EncoderError(f"open_clip:{arch} names no weights: give @TAG (one of open_clip's pretrained tags), "
                               f"@/path/to/weights, or @random for random weights")
        if pretrained == "random":
            torch.manual_seed(0)
            try:
                with quiet_logs():  # open_clip warns "initialized randomly": asked for here
                    model, _, preprocess = open_clip.create_model_and_transforms(arch)
            except Exception as e:  # a bad config surfaces as whatever open_clip/torch raise
                raise EncoderError(f"cannot build open_clip model {arch!r}: {type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''}; check the model config") from None
        else:
            local = os.path.exists(pretrained)
            tags = [] if local else open_clip.list_pretrained_tags_by_model(arch)
            if not local and pretrained not in tags:
                raise EncoderError(f"{pretrained!r} is neither a weights file nor a pretrained tag of open_clip {arch}; "
                                   f"its tags: {', '.join(tags) or 'none'} (or @random for random weights)")
            try:
                with hub_cache_only_when_unreachable() as online, quiet_logs():  # one line from us, not the library's
                    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained)
            except Exception as e:  # download and format errors vary: all mean "these weights cannot be had here"
                why = str(e).splitlines()[0][:160] if online or local else "they are not in the Hugging Face " \
                    "cache, and huggingface.co cannot be reached from here"
                fix = "check that the file holds this model's weights" if local else where_to_get(arch, pretrained)
                raise EncoderError(f"cannot load open_clip weights {pretrained!r} for {arch}: {why}; {fix}") from None
        self.model = model.eval().to(device)
        self.device = device
        # the learned temperature of its image-text logits (about 100 for trained CLIPs): a zero-shot head's scale
        self.logit_scale = float(model.logit_scale.detach().exp()) if hasattr(model, "logit_scale") else None
        self.preprocess_fn = preprocess
        self.transform = preprocess
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.config = config or open_clip.get_model_config(arch)
        self.dim = int(self.config["embed_dim"])
        self.default_space = slug(f"clip_{arch}")
        self._weights = hash_state_dict(self.model)

    def identity(self) -> dict[str, Any]:
        pretrained = self.pretrained if self.pretrained and not os.path.exists(self.pretrained) else None
        return {"library": "open_clip", "model": self.arch, "dim": self.dim, "normalized": True,
                "config": {"model_cfg": self.config, "pretrained_tag": pretrained},
                "weights_sha256": self._weights}

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                tokens = self.tokenizer(list(texts[i:i + batch_size])).to(self.device)
                out.append(self.model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return as_float32(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def preprocess(self, image: Any) -> Any:
        return self.preprocess_fn(image)

    def encode_preprocessed(self, batch: list[Any]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = (batch if isinstance(batch, torch.Tensor) else torch.stack(batch)).to(self.device, non_blocking=True)
            return as_float32(self.model.encode_image(x, normalize=True).float().cpu().numpy())
