"""Richer frozen features: encoder spec options that keep pooled features from several layers of the same model
(Head2Toe, Evci et al., 2022: intermediate layers transfer better to inputs far from the pretraining data) and, for
images, the mean embedding of an image and its horizontal flip.

A spec takes options after ``?``, separated by ``&`` (quote it in a shell): ``efficientnet-lite0?layers=all``,
``minilm?layers=last4``, ``efficientnet-lite0?flip``, ``timm:ARCH@FILE?layers=0,2,5&flip``. ``layers`` is ``all``,
``lastN`` or indices into the model's blocks (timm: each ``feature_info`` stage, then the pooled head, which is the
plain embedding; sentence-transformers: the embedding layer's output, then each transformer layer). Each chosen
block is pooled (global average over a CNN stage's positions, masked mean over a transformer layer's tokens),
averaged with the flipped image's when ``flip``, L2-normalised, and the blocks are concatenated and scaled by
sqrt(D / blocks) (D the vector's width), so every block weighs the same and the vector has norm sqrt(D). A spec
without options is the plain encoder, with its own fingerprint, unchanged.

The same parser reads ``precision=int8`` (text encoders; ``fp32``, the default, is written as no option): the model
quantised to int8 on the CPU, another encoder with a fingerprint and a space of its own (see ``int8.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import EncoderError

OPTIONS_HELP = "layers=all|lastN|I,J,...; flip (images); precision=int8 (text, CPU)"
PRECISIONS = ("fp32", "int8")
PRECISION_KEYS = ("precision", "quantization", "calibration_sha256")  # what int8 adds to an identity's config


@dataclass(frozen=True)
class SpecOptions:
    layers: str | None = None  # "all", "lastN" or "I,J,..." as the spec wrote it (lower case, no spaces)
    flip: bool = False
    precision: str | None = None  # "int8", or None for the model's own fp32

    def __bool__(self) -> bool:
        return self.layers is not None or self.flip or self.precision is not None

    def features(self) -> bool:
        """Whether the options change what the vector is made of (layers, flip), not only its precision."""
        return self.layers is not None or self.flip

    def query(self) -> str:
        """The options as a spec writes them, in one order: '' when none."""
        parts = ([] if self.layers is None else [f"layers={self.layers}"]) + (["flip"] if self.flip else []) + \
            ([] if self.precision is None else [f"precision={self.precision}"])
        return "?" + "&".join(parts) if parts else ""

    def suffix(self) -> str:
        """What the options add to the encoder's default space name: ``_layers_all``, ``_flip``, ``_int8``, ..."""
        parts = ([] if self.layers is None else ["layers", *self.layers.split(",")]) + (["flip"] if self.flip else []) \
            + ([] if self.precision is None else [self.precision])
        return "".join(f"_{p}" for p in parts)

    def config(self, indices: list[int], dims: list[int], pooling: str) -> dict[str, Any]:
        """What the options add to the encoder's identity (so each combination is a space of its own): the chosen
        blocks, their widths (in the vector's order) and how they are pooled."""
        out: dict[str, Any] = {}
        if self.layers is not None:
            out.update(layers=indices, block_dims=dims, layer_pooling=pooling,
                       block_norm="l2, concatenated, * sqrt(dim / blocks)")
        if self.flip:
            out["flip"] = "mean of the image and its horizontal flip, l2 * sqrt(dim)"
        return out


def export_name(base: str, options: SpecOptions, identity: dict[str, Any]) -> str:
    """The name of an encoder's compiled (fp32) export in the runtime cache: the plain model's own name, or with
    layers/flip their suffix and a hash of the identity (so a change in how blocks are joined is never served an old
    export). The precision is left out: an int8 encoder quantises the same fp32 export (see ``int8.py``)."""
    if not options.features():
        return base
    from dataclasses import replace

    from .base import fingerprint_of

    plain = {**identity, "config": {k: v for k, v in identity.get("config", {}).items()
                                    if k not in PRECISION_KEYS}}
    return f"{base}{replace(options, precision=None).suffix()}-{fingerprint_of(plain)[:8]}"


def split_spec(spec: str) -> tuple[str, SpecOptions]:
    """``'efficientnet-lite0?layers=all&flip'`` -> ``('efficientnet-lite0', SpecOptions('all', True))``."""
    spec = spec.strip()
    base, sep, query = spec.rpartition("?")
    if not sep:
        return spec, SpecOptions()
    layers, flip, precision = None, False, None
    for part in filter(None, query.split("&")):
        key, eq, value = (s.strip().lower() for s in part.partition("="))
        if key == "layers" and value:
            layers = _check_layers(value.replace(" ", ""), spec)
        elif key == "flip" and value in ("", "true", "1", "yes"):
            flip = True
        elif key == "flip" and value in ("false", "0", "no"):
            flip = False
        elif key == "precision" and value in PRECISIONS:
            precision = None if value == "fp32" else value
        elif key == "precision":
            raise EncoderError(f"precision={value!r} in {spec!r}: use {' or '.join(PRECISIONS)} (e.g. "
                               "minilm?precision=int8)")
        else:
            raise EncoderError(f"unknown encoder option {part!r} in {spec!r}; options: {OPTIONS_HELP} "
                               "(e.g. efficientnet-lite0?layers=all)")
    if not base.strip():
        raise EncoderError(f"encoder spec {spec!r} has options but no encoder before '?'")
    return base.strip(), SpecOptions(layers, flip, precision)


def canonical_spec(spec: str) -> str:
    """The spec with its options in one order, so the same encoder is always written the same way."""
    base, options = split_spec(spec)
    return base + options.query()


def _check_layers(value: str, spec: str) -> str:
    if value == "all" or (value.startswith("last") and value[4:].isdigit() and int(value[4:]) > 0) or \
            all(p.isdigit() for p in value.split(",")):
        return value
    raise EncoderError(f"layers={value!r} in {spec!r}: use all, lastN (e.g. last4) or block indices (e.g. 0,2,5)")


def select_layers(value: str, blocks: int, spec: str) -> list[int]:
    """The block indices ``layers=value`` names, for a model of ``blocks`` blocks."""
    if value == "all":
        return list(range(blocks))
    if value.startswith("last"):
        n = int(value[4:])
        if n > blocks:
            raise EncoderError(f"layers={value} in {spec!r}: the model has {blocks} blocks; use last{blocks} or all")
        return list(range(blocks - n, blocks))
    chosen = sorted({int(p) for p in value.split(",")})
    if chosen[-1] >= blocks:
        raise EncoderError(f"layers={value} in {spec!r}: the model has blocks 0 to {blocks - 1}")
    return chosen


def join_blocks(blocks: list[Any]) -> Any:
    """Pooled ``(n, d_i)`` torch blocks -> ``(n, D = sum d_i)``: each L2-normalised, concatenated, times
    sqrt(D / blocks): every block weighs the same, and the features have the scale of standardised ones (root mean
    square 1, norm sqrt(D)), the scale a logistic regression's default C suits (unit-norm vectors of several
    thousand dimensions pushed the head's C to the top of its grid and cost 10 points at 10 per label on MNIST)."""
    import torch

    normed = [torch.nn.functional.normalize(b.float(), dim=1) for b in blocks]
    width = sum(int(b.shape[1]) for b in blocks)
    return torch.cat(normed, dim=1) * (width / len(blocks)) ** 0.5


def image_net(model: Any, options: SpecOptions, spec: str) -> tuple[Any, list[int]]:
    """A torch module: images -> the options' vector, from a timm ``model`` (classifier removed) through its own
    ``forward_intermediates`` and ``forward_head``; and the chosen block indices."""
    import torch

    if options.layers is not None and not hasattr(model, "forward_intermediates"):
        raise EncoderError(f"{spec!r}: this timm model has no forward_intermediates, which layers= needs; "
                           "choose another architecture, or drop the layers option")
    stages = len(model.feature_info) if options.layers is not None else 0
    chosen = select_layers(options.layers, stages + 1, spec) if options.layers is not None else [stages]
    inner = [i for i in chosen if i < stages]

    class ImageBlocks(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            return join_blocks(self.blocks(x))

        def blocks(self, x: Any) -> list[Any]:
            """Each chosen block's pooled ``(n, d_i)`` features, before joining."""
            n = x.shape[0]
            if options.flip:
                x = torch.cat([x, torch.flip(x, dims=[3])])
            if inner:
                final, maps = self.model.forward_intermediates(x, indices=inner)
                pooled = [m.mean(dim=(2, 3)) for m in maps]
                head = self.model.forward_head(final, pre_logits=True)
            else:
                pooled, head = [], self.model(x)
            blocks = pooled + ([head] if stages in chosen else [])
            if options.flip:
                blocks = [(b[:n] + b[n:]) / 2 for b in blocks]
            return blocks

    return ImageBlocks().eval(), chosen


def text_net(transformer: Any, options: SpecOptions, spec: str) -> tuple[Any, list[int]]:
    """A torch module: token ids and mask -> the masked mean of each chosen hidden state of a Hugging Face
    ``transformer`` (hidden state 0 is the embedding layer's output), joined; and the chosen indices."""
    import torch

    if options.flip:
        raise EncoderError(f"{spec!r}: flip is for images; a text encoder takes layers= only")
    layers = int(transformer.config.num_hidden_layers)
    chosen = select_layers(options.layers or "all", layers + 1, spec)

    class TextBlocks(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            states = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                                return_dict=True, **extra).hidden_states
            mask = attention_mask.unsqueeze(-1).to(states[0].dtype)
            count = mask.sum(1).clamp(min=1e-9)
            return join_blocks([(states[i] * mask).sum(1) / count for i in chosen])

    return TextBlocks().eval(), chosen
