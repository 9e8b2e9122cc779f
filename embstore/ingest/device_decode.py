"""Image decoding on the model's device. A batch of files is read and checked against its hashes by CPU threads;
its JPEGs are decoded together by the device's decoder (``torchvision.io.decode_jpeg(device='cuda')``: nvJPEG),
then resized, cropped and normalised there, the encoder's own transform replayed on tensors; every other file (PNG,
WebP, a JPEG the device decoder rejects) goes through the CPU path (PIL and the encoder's ``preprocess``) and is
counted. Memory holds a few batches of file bytes, never a chunk of decoded images.

PIL decoding and resizing on 16 CPUs gave about 2,500 images/s on an H200 box, a tenth of what EfficientNet-Lite0
encodes there: on a GPU, this path is the default (``EMBSTORE_DECODE=cpu`` turns it off). On a CPU it runs only when
asked for (``EMBSTORE_DECODE=device``), with torchvision's CPU decoder: that is how it is tested without a GPU.
"""
from __future__ import annotations

import os
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

from ..errors import ImageTooLargeError, InputError
from .decode import decode_one, read_file
from .hashing import content_hash

JPEG_MAGIC = b"\xff\xd8\xff"
MODES = ("auto", "device", "cpu")


def wanted(device: str) -> bool:
    """Whether the ingest decodes on the device: ``EMBSTORE_DECODE`` (auto | device | cpu); auto = on a GPU."""
    mode = (os.environ.get("EMBSTORE_DECODE") or "auto").strip().lower()
    if mode not in MODES:
        raise InputError(f"EMBSTORE_DECODE is {mode!r}; use one of: {', '.join(MODES)}")
    return mode == "device" or (mode == "auto" and device.startswith("cuda"))


class TensorTransform:
    """An encoder's torchvision transform (Resize, CenterCrop, ToTensor, Normalize, RGB conversion) replayed on
    uint8 CHW tensors, a batch at a time: resizing image by image (they differ in size), the rest on the stacked
    batch. ``of(transform)`` is None for a transform with any other step: that encoder decodes on the CPU."""

    def __init__(self, steps: list[tuple[str, Any]]):
        self.steps = steps

    @classmethod
    def of(cls, transform: Any) -> "TensorTransform | None":
        from torchvision import transforms as T

        steps: list[tuple[str, Any]] = []
        for t in getattr(transform, "transforms", [transform]):
            name = type(t).__name__
            if isinstance(t, T.Resize):
                steps.append(("resize", (t.size, t.interpolation, t.max_size)))
            elif isinstance(t, T.CenterCrop):
                steps.append(("crop", t.size))
            elif name in ("ToTensor", "MaybeToTensor"):
                steps.append(("float", None))
            elif isinstance(t, T.Normalize):
                steps.append(("normalize", ([float(v) for v in t.mean], [float(v) for v in t.std])))
            elif getattr(t, "__name__", "") == "_convert_to_rgb" or name in ("ToRGB", "MaybeConvertMode"):
                continue  # decode_jpeg(mode=RGB) already gives three channels
            else:
                return None
        if [s for s, _ in steps] != sorted((s for s, _ in steps), key=["resize", "crop", "float", "normalize"].index):
            return None  # an order the batch replay does not follow
        return cls(steps)

    def __call__(self, images: list[Any]) -> Any:
        import torch
        from torchvision.transforms.v2 import functional as F

        out: list[Any] = []
        for img in images:
            if img.device.type != "cpu":  # the device resizes floats (antialiased bicubic has no uint8 kernel there)
                img = img.float()
            for step, arg in self.steps:
                if step == "resize":
                    size, interpolation, max_size = arg
                    img = F.resize(img, size, interpolation=interpolation, max_size=max_size, antialias=True)
                elif step == "crop":
                    img = F.center_crop(img, list(arg))
            out.append(img if img.dtype == torch.uint8 else img.clamp_(0, 255))
        batch = torch.stack(out)
        for step, arg in self.steps:
            if step == "float":
                batch = batch.float().div_(255)
            elif step == "normalize":
                batch = F.normalize(batch, arg[0], arg[1])
        return batch


def decode_batches(paths: list[str], digests: list[str], preprocess: Callable[[Any], Any],
                   transform: TensorTransform, batch_size: int, workers: int, device: str,
                   counts: Counter, max_pixels: int | None = None) -> Iterator[tuple[list[int], Any, list[tuple[int, Any]]]]:
    """Yield (indices, inputs on ``device`` stacked in index order, errors) batch by batch, as
    ``decode.decode_batches`` does; ``counts`` gains "device" and "cpu": files decoded on each."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque = deque()
        for start in range(0, len(paths), batch_size):
            ks = list(range(start, min(start + batch_size, len(paths))))
            pending.append((ks, [pool.submit(_read, paths[k], digests[k]) for k in ks]))
            if len(pending) > 2:  # the files of the next batches are read while this one decodes
                ks, futures = pending.popleft()
                yield _batch(ks, [f.result() for f in futures], paths, preprocess, transform, device, counts, pool,
                             max_pixels)
        while pending:
            ks, futures = pending.popleft()
            yield _batch(ks, [f.result() for f in futures], paths, preprocess, transform, device, counts, pool,
                             max_pixels)


def _read(path: str, digest: str) -> tuple[bytes | None, tuple[str, str] | None]:
    data, error = read_file(path)
    if data is None:
        return None, ("file", str(error))
    if content_hash(data) != digest:
        return None, ("file", f"file changed while it was being ingested: {path}; ingest it again")
    return data, None


def _batch(ks: list[int], read: list[tuple[bytes | None, Any]], paths: list[str], preprocess: Callable[[Any], Any],
           transform: TensorTransform, device: str, counts: Counter,
           pool: ThreadPoolExecutor, max_pixels: int | None = None) -> tuple[list[int], Any, list[tuple[int, Any]]]:
    import torch

    errors = [(k, error) for k, (data, error) in zip(ks, read) if error is not None]
    for i, (k, (data, error)) in enumerate(zip(ks, read)):  # checked from its header, as the CPU path does
        if data is not None and data[:3] == JPEG_MAGIC and (too_large := _too_large(data, paths[k], max_pixels)):
            errors.append((k, ("content", too_large)))
            read[i] = (None, errors[-1][1])
    jpegs = [(k, data) for k, (data, error) in zip(ks, read) if data is not None and data[:3] == JPEG_MAGIC]
    others = [(k, data) for k, (data, error) in zip(ks, read) if data is not None and data[:3] != JPEG_MAGIC]
    decoded = _decode_on_device([d for _, d in jpegs], device)
    on_device = [(k, img) for (k, _), img in zip(jpegs, decoded) if img is not None]
    others += [(k, d) for (k, d), img in zip(jpegs, decoded) if img is None]  # the device decoder refused them
    counts["device"] += len(on_device)
    inputs: dict[int, Any] = {}
    if on_device:
        batch = transform([img for _, img in on_device])
        inputs.update((k, x) for (k, _), x in zip(on_device, batch))
    if others:
        for (k, _), (x, error) in zip(others, pool.map(lambda kd: decode_one(kd[1], paths[kd[0]], preprocess, max_pixels),
                                                         others)):
            if error is not None:
                errors.append((k, error))
            else:
                counts["cpu"] += 1
                x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
                inputs[k] = x.to(device, non_blocking=True)
    good = sorted(inputs)
    return good, (torch.stack([inputs[k] for k in good]) if good else None), sorted(errors)


def _too_large(data: bytes, path: str, max_pixels: int | None) -> str | None:
    """The quarantine reason of a JPEG with more pixels than the limit (read from its header), else None; a file
    PIL cannot open is left to the device decoder (and the CPU path after it)."""
    from ..encoders.base import open_image

    try:
        open_image(data, max_pixels).close()
    except ImageTooLargeError as e:
        return f"image too large: {path}: {e}"
    except Exception:  # not PIL's to judge here: the decoders say what is wrong with it
        pass
    return None


def _decode_on_device(blobs: list[bytes], device: str) -> list[Any]:
    """uint8 CHW tensors on ``device``, None for each file the decoder rejects (all in one call; one at a time to
    find which, when the call fails)."""
    if not blobs:
        return []
    import warnings

    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    datas = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    with warnings.catch_warnings():  # torchvision 0.29 points at TorchCodec, which has no batched nvJPEG call yet
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return list(decode_jpeg(datas, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            out = []
            for d in datas:
                try:
                    out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    out.append(None)
            return out
