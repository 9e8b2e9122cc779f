"""int8 precision, asked for with the spec option ``precision=int8`` (``minilm?precision=int8``): a text encoder's
OpenVINO export quantised to int8 by NNCF's static post-training quantisation, calibrated on a set of generic English
sentences bundled with embstore (``calibration/text.txt``: questions, reviews, news, instructions, search queries,
paragraphs; none from an evaluation set). Calibration needs realistic text: random tokens as calibration kept a
worst cosine of only 0.91 to fp32.

The quantised model is made once and cached beside the fp32 export (``runtime.py``'s folder scheme), named by the
weights' hash, ``int8``, the calibration set's hash and the OpenVINO and NNCF versions; each process after that
only compiles it. The operations left unquantised run in fp32 on every CPU, so a space's int8 vectors do not depend
on whether a CPU has bf16. int8 is another encoder: its identity records the precision and the calibration set, so
its fingerprint and its default space (``minilm_int8``) are its own, and an ingest of int8 vectors into an fp32 space
(or the reverse) is refused. Every call runs in the quantised model, a one-text query too, so a space never mixes
precisions.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import EncoderError, InputError

CALIBRATION_TEXT = Path(__file__).parent / "calibration" / "text.txt"
PACKAGES = ("openvino", "nncf")
INSTALL = "pip install 'embstore[int8]'"
QUANTIZATION = "OpenVINO NNCF static int8 (transformer preset, per-text calibration), fp32 elsewhere"


def check(device: str, runtime: str, spec: str) -> None:
    """Before a model loads: int8 runs in OpenVINO on the CPU, with NNCF installed; else one line saying what to do."""
    if device != "cpu":
        raise InputError(f"{spec!r}: precision=int8 runs on the CPU, and this run is on {device}; use --device cpu, "
                         "or the spec without ?precision=int8")
    if runtime not in ("auto", "openvino"):
        raise InputError(f"{spec!r}: precision=int8 runs in OpenVINO, not --runtime {runtime}; use --runtime auto "
                         "or openvino")
    missing = [p for p in PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        raise EncoderError(f"{spec!r}: precision=int8 needs the package{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)}: {INSTALL}; or drop ?precision=int8")


def calibration_texts() -> list[str]:
    return [line.strip() for line in CALIBRATION_TEXT.read_text(encoding="utf-8").splitlines() if line.strip()]


def calibration_sha() -> str:
    return hashlib.sha256(CALIBRATION_TEXT.read_bytes()).hexdigest()


def identity_config() -> dict[str, Any]:
    """What int8 adds to an encoder's identity (and so to its fingerprint)."""
    return {"precision": "int8", "quantization": QUANTIZATION, "calibration_sha256": calibration_sha()[:16]}


def nncf_version() -> str:
    from importlib.metadata import version

    return version("nncf")


def compile_int8(module: Any, example: dict[str, Any], dynamic: dict[str, dict[int, str]], sha: str, name: str,
                 calibration: Callable[[], list[dict[str, np.ndarray]]], hint: str = "THROUGHPUT") -> Any:
    """``module``'s OpenVINO export quantised to int8 and compiled for the CPU (a ``runtime.Compiled``): the fp32
    export and the quantised model are made the first time and read from the cache after. ``calibration()`` gives
    the model's inputs for the calibration set (called only when quantising)."""
    import openvino as ov

    from .runtime import Compiled, cache_root, export, read_meta, runtime_version, write_folder

    version, cal = runtime_version("openvino"), calibration_sha()
    folder = cache_root() / f"{sha[:16]}-{name}-int8-{cal[:12]}-openvino-{version}-nncf{nncf_version()}"
    expect = {"precision": "int8", "calibration_sha256": cal}
    meta = read_meta(folder, sha, expect)
    if meta is None:
        source, source_meta = export("openvino", module, example, dynamic, sha, name)

        def write(tmp: Path) -> dict[str, Any]:
            model = quantize(ov.Core().read_model(str(source / "model.xml")), calibration())
            ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
            return {**{k: source_meta[k] for k in ("kind", "version", "weights_sha256", "inputs")}, **expect,
                    "quantization": QUANTIZATION, "nncf": nncf_version(), "calibration_rows": len(calibration_texts()),
                    "from": source.name}

        meta = write_folder(folder, sha, write, "the int8 export")
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(folder / "model.xml")), "CPU",
                                  {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": "f32"})
    return Compiled("openvino", folder, meta, "int8", compiled)


def quantize(model: Any, feeds: list[dict[str, np.ndarray]]) -> Any:
    """NNCF's static int8 quantisation of an OpenVINO model, calibrated on ``feeds`` (each one input), quietly: its
    log and progress bars are kept from the caller's output."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nncf

            return nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                                 subset_size=len(feeds))
    finally:
        logger.setLevel(level)
