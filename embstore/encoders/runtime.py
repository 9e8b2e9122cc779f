"""Compiled CPU runtimes for a frozen torch model: OpenVINO or ONNX Runtime run the same weights several times faster
than torch on a CPU.

The model is exported once into a cache folder named by its weights' hash, the runtime and the runtime's version
(``EMBSTORE_CACHE``, else ``$XDG_CACHE_HOME/embstore``, else ``~/.cache/embstore``, then ``runtimes/``); each process
after that only compiles it. An export is written into a temporary folder and renamed into place when whole, so a
killed export never leaves a half model where a later run would load it.

A runtime is an execution detail: it never changes a space's fingerprint, and its vectors match the torch model's
within cosine 0.999. OpenVINO computes in fp32, or in bf16 on a CPU that has it when, measured at the first compile
on this CPU, a probe gives cosine >= ``PROBE_MIN_COSINE`` (0.9999) to the torch model for every probe row (MiniLM
passes; the EfficientNet-Lite0 image model does not, and runs in fp32) and bf16 runs faster than fp32 by
``BF16_MIN_GAIN`` on a timing feed. Both are needed: on the AMD EPYC VM of bench/RESULTS.md bf16 ran MiniLM at
1.7x fp32, on an Intel Xeon with AVX512-BF16 but no AMX at 0.75x (OpenVINO's own default there is bf16). int8 is no runtime but an encoder of its
own (the spec option ``precision=int8``, ``int8.py``), quantised from the OpenVINO export made here.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..config import RUNTIMES
from ..errors import EncoderError, InputError
FASTEST_FIRST = ("openvino", "onnx")  # measured on the 2-core CPU (bench/ingest.py, bench/RESULTS.md)
PACKAGES = {"openvino": ("openvino",), "onnx": ("onnxruntime", "onnx")}  # onnx: torch.onnx.export needs it
INSTALL = {"openvino": "pip install openvino", "onnx": "pip install 'embstore[onnx]'"}
# bf16 is kept only when its worst error on the probe is a tenth of what the contract (0.999) allows: on real inputs
# the error measured up to 9x the probe's (EfficientNet-Lite0: 0.99965 on the probe, 0.9968 on MNIST: fp32)
PROBE_MIN_COSINE = 0.9999
BF16_MIN_GAIN = 1.05  # bf16 (the less exact) only where it is at least this much faster than fp32
PRECISION_RULE = "cosine+speed"  # what a recorded choice was made by: one of another rule is made again
# OpenVINO's PERFORMANCE_HINT: text runs many batches through an async queue, where THROUGHPUT (2 streams of 1
# thread on 2 cores) measured ~700 texts/s against ~350-630 for LATENCY (1 stream of 2); images run one batch at a
# time (the decoder workers feed them), where LATENCY and THROUGHPUT measured alike
OPENVINO_REQUESTS = 2  # at least this many in flight: the next batch is tokenized while the current ones run
MIN_ROWS = 16  # fewer rows (a query) run in torch, already loaded: compiling would cost more than it saves
STALE_SECONDS = 3600  # a temporary export folder older than this was left by a killed export

_warned: set[str] = set()


def check_runtime(runtime: str | None) -> str:
    runtime = runtime or "auto"
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; use {', '.join(RUNTIMES)}")
    return runtime


def installed(kind: str) -> bool:
    """Whether the packages ``kind`` needs can be imported here (asked without importing them)."""
    return all(importlib.util.find_spec(p) is not None for p in PACKAGES[kind])


def choose(requested: str, device: str) -> str:
    """The runtime to run: torch on an accelerator; on the CPU the one asked for, or for ``auto`` the fastest one
    installed, else torch, with one warning naming how to get the faster one."""
    requested = check_runtime(requested)
    if device != "cpu":
        if requested in ("auto", "torch"):
            return "torch"
        raise InputError(f"runtime {requested!r} runs on the CPU, and this run is on {device}; use --device cpu, "
                         "or --runtime auto (torch on a GPU)")
    if requested == "auto":
        for kind in FASTEST_FIRST:
            if installed(kind):
                return kind
        warn_once("torch-fallback", f"embedding on the CPU with torch: {INSTALL['openvino']} makes it several "
                                    "times faster (embstore uses OpenVINO when it is installed)")
        return "torch"
    if requested != "torch" and not installed(requested):
        missing = [p for p in PACKAGES[requested] if importlib.util.find_spec(p) is None]
        raise EncoderError(f"runtime {requested!r} needs the package{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)}: {INSTALL[requested]}; or use --runtime auto")
    return requested


def warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def cache_root() -> Path:
    base = os.environ.get("EMBSTORE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "embstore")
    return Path(base).expanduser() / "runtimes"


def runtime_version(kind: str) -> str:
    if kind == "openvino":
        import openvino

        return openvino.__version__.split("-")[0]
    import onnxruntime
    import torch

    return f"{onnxruntime.__version__}-torch{torch.__version__.split('+')[0]}"


class Compiled:
    """One exported model compiled for the CPU: ``run`` one batch, or ``run_all`` many with the next prepared while
    the current one runs. Inputs are a dict of NumPy arrays named as at export; the output is the model's first."""

    def __init__(self, kind: str, folder: Path, meta: dict[str, Any], precision: str, model: Any):
        self.kind, self.folder, self.meta, self.precision = kind, folder, meta, precision
        self.inputs: list[str] = meta["inputs"]
        self._model = model

    def describe(self) -> str:
        return f"{self.kind} {self.meta['version']} {self.precision}"

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        if self.kind == "openvino":
            return np.array(self._model(feed)[0], dtype=np.float32, copy=True)
        return np.asarray(self._model.run(None, feed)[0], dtype=np.float32)

    def run_all(self, batches: Iterable[tuple[Any, dict[str, np.ndarray]]]) -> list[tuple[Any, np.ndarray]]:
        """(key, feed) pairs -> (key, output) pairs, in the order they finish."""
        if self.kind != "openvino":
            return [(key, self.run(feed)) for key, feed in batches]
        import openvino as ov

        done: list[tuple[Any, np.ndarray]] = []
        requests = max(OPENVINO_REQUESTS, int(self._model.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        queue = ov.AsyncInferQueue(self._model, requests)
        queue.set_callback(lambda request, key: done.append(
            (key, np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True))))
        for key, feed in batches:
            queue.start_async(feed, key)
        queue.wait_all()
        return done


class LazyCompiled:
    """An encoder's compiled model, made on first use, once, under a lock, by ``make()`` (a ``Compiled``)."""

    def __init__(self, make: Any):
        self._make, self._value, self._lock = make, None, threading.Lock()

    def get(self) -> "Compiled":
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._make()
        return self._value

    def describe(self) -> str:
        """What embeds a batch: ``torch`` until the compiled model is made, then its runtime, version and precision."""
        return self._value.describe() if self._value is not None else "torch"


def compile_model(kind: str, module: Any, example: dict[str, Any], dynamic: dict[str, dict[int, str]], sha: str,
                  name: str, probe: dict[str, np.ndarray] | None = None, hint: str = "LATENCY",
                  timing: dict[str, np.ndarray] | None = None) -> Compiled:
    """``module`` (a torch module in eval mode taking ``example``'s tensors as named arguments) compiled with
    ``kind``: exported into the cache the first time, loaded from it after. ``probe`` (inputs as NumPy arrays)
    decides whether OpenVINO may compute in bf16 on this CPU, and ``timing`` (a batch shaped as real ones; default
    the probe) whether it is faster there; ``hint`` is OpenVINO's PERFORMANCE_HINT (LATENCY for one batch at a
    time, THROUGHPUT for many in flight)."""
    folder, meta = export(kind, module, example, dynamic, sha, name)
    if kind == "openvino":
        return _openvino(folder, meta, module, probe, hint, timing)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    return Compiled(kind, folder, meta, "fp32", session)


def export(kind: str, module: Any, example: dict[str, Any], dynamic: dict[str, dict[int, str]], sha: str,
           name: str) -> tuple[Path, dict[str, Any]]:
    """The cache folder of ``module``'s export for ``kind`` and its record: made the first time, read after."""
    folder = cache_root() / f"{sha[:16]}-{name}-{kind}-{runtime_version(kind)}"
    meta = read_meta(folder, sha)
    if meta is None:
        meta = _export(kind, module, example, dynamic, sha, folder)
    return folder, meta


def read_meta(folder: Path, sha: str, expect: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The export's record, when the folder holds a whole export of these weights (and, given ``expect``, with those
    values in its record); else None (export again)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        whole = meta["weights_sha256"] == sha and all(meta.get(k) == v for k, v in (expect or {}).items()) and all(
            (folder / f).stat().st_size == size for f, size in meta["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return meta if whole else None


def _export(kind: str, module: Any, example: dict[str, Any], dynamic: dict[str, dict[int, str]], sha: str,
            folder: Path) -> dict[str, Any]:
    import torch

    def write(tmp: Path) -> dict[str, Any]:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation chatter from the exporters
            if kind == "openvino":
                import openvino as ov

                model = ov.convert_model(module, example_input=example)
                ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)  # the weights as they are
            else:
                torch.onnx.export(module, tuple(example.values()), str(tmp / "model.onnx"),
                                  input_names=list(example), output_names=["output"],
                                  dynamic_axes={**dynamic, "output": {0: "batch"}}, opset_version=17, dynamo=False)
        return {"kind": kind, "version": runtime_version(kind), "weights_sha256": sha, "inputs": list(example),
                "torch": torch.__version__}

    return write_folder(folder, sha, write, f"the {kind} export")


def write_folder(folder: Path, sha: str, write: Any, what: str) -> dict[str, Any]:
    """Make a cache folder whole or not at all: ``write(tmp)`` fills a temporary folder and returns its record
    (with ``weights_sha256``), which is saved with the files' sizes as ``meta.json``; the folder is renamed into
    place when whole. Returns the record as read back."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(folder.parent)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        meta = write(tmp)
        meta = {**meta, "files": {p.name: p.stat().st_size for p in tmp.iterdir()},
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if folder.exists():  # an export without its record (or of other weights): never loaded, replaced
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process renamed its own whole export into place first: use that one
            if read_meta(folder, sha) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta = read_meta(folder, sha)
    if meta is None:
        raise EncoderError(f"{what} in {folder} cannot be read back; delete the folder and run again")
    return meta


def _clear_stale(root: Path) -> None:
    now = time.time()
    for p in root.glob(".tmp-*"):
        try:
            if now - p.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _openvino(folder: Path, meta: dict[str, Any], module: Any, probe: dict[str, np.ndarray] | None,
              hint: str, timing: dict[str, np.ndarray] | None = None) -> Compiled:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(folder / "model.xml"))

    def build(precision: str) -> Compiled:
        config = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision}
        return Compiled("openvino", folder, meta, "bf16" if precision == "bf16" else "fp32",
                        core.compile_model(model, "CPU", config))

    if probe is None or "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return build("f32")
    cpu = hashlib.sha256(f"{core.get_property('CPU', 'FULL_DEVICE_NAME')}|{meta['version']}".encode()).hexdigest()
    choice_file = folder / f"precision-{cpu[:12]}.json"
    try:
        recorded = json.loads(choice_file.read_text())
        same = (recorded["threshold"], recorded.get("rule"), recorded.get("min_gain")) == (
            PROBE_MIN_COSINE, PRECISION_RULE, BF16_MIN_GAIN)
        choice = recorded["precision"] if same else None
    except (OSError, ValueError, KeyError):
        choice = None
    if choice is not None:
        return build(choice)
    # measured once on this CPU: bf16 only where it keeps the vectors and is faster
    candidate = build("bf16")
    cos = _min_cosine(candidate.run(probe), _torch_outputs(module, probe))
    record: dict[str, Any] = {"probe_min_cosine": cos, "threshold": PROBE_MIN_COSINE, "rule": PRECISION_RULE,
                              "min_gain": BF16_MIN_GAIN}
    plain = build("f32")
    if cos >= PROBE_MIN_COSINE:
        record["seconds"] = _race({"bf16": candidate, "f32": plain}, timing if timing is not None else probe)
    fast = "seconds" in record and record["seconds"]["bf16"] * BF16_MIN_GAIN <= record["seconds"]["f32"]
    record["precision"] = "bf16" if fast else "f32"
    tmp = folder / f".{choice_file.name}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, choice_file)
    return candidate if fast else plain


def _race(models: dict[str, Compiled], feed: dict[str, np.ndarray], batches: int = 4, rounds: int = 3) -> dict:
    """Seconds each model takes for ``batches`` copies of ``feed`` (``run_all``, as an ingest runs them), the best
    of ``rounds`` taken in turn, after one warm-up run each."""
    best = {name: float("inf") for name in models}
    for r in range(rounds + 1):
        for name, model in models.items():
            t = time.perf_counter()
            model.run_all([(k, feed) for k in range(batches)])
            if r:
                best[name] = min(best[name], time.perf_counter() - t)
    return {name: round(s, 5) for name, s in best.items()}


def _torch_outputs(module: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return module(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feed.items()}).float().numpy()


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float((a * b).sum(1).min())
