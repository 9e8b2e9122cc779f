"""precision=int8 on the CPU (issue 12): the int8 MiniLM (`minilm?precision=int8`) against the default CPU runtime,
on TREC; one JSON line.

    python bench/int8.py [--repeat 3] [--train ../shared/datasets/trec/train.csv] [--test .../test.csv] [--log F]

- first use: the export and quantisation time, into a fresh temporary cache (EMBSTORE_CACHE), as a user's first run;
- speed: `encode_text` of every train text, int8 and the default (`minilm`, `--runtime auto`: OpenVINO, bf16 where
  the CPU has it), alternating, the fastest of --repeat runs each; the load average (`os.getloadavg`) before and
  after, since the 2-core machine is shared;
- cosine of each side's vectors to sentence-transformers' fp32 torch encode, every train and test text, min / mean;
- heads: scikit-learn `LogisticRegression(max_iter=1000)` and embstore's default `logreg` head (LinearProbe, C by
  cross-validation) trained on each precision's train vectors, test accuracy of each, and the number of test items
  whose predicted label differs between the two precisions.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from common import REPO, SHARED, cosines


def load(path: Path) -> tuple[list[str], np.ndarray]:
    import pyarrow.csv as pcsv

    table = pcsv.read_csv(path)
    return [str(t) for t in table.column("text").to_pylist()], np.asarray([str(v) for v in
                                                                          table.column("label").to_pylist()])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, default=SHARED / "datasets" / "trec" / "train.csv")
    p.add_argument("--test", type=Path, default=SHARED / "datasets" / "trec" / "test.csv")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per side, alternating (default 3)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--log", type=Path, help="append the JSON line to this file too")
    a = p.parse_args()
    os.environ["EMBSTORE_CACHE"] = tempfile.mkdtemp(prefix="embstore-int8-cache-")  # first use measured from cold
    import torch

    from embstore.encoders import get_encoder
    from embstore.estimators import LinearProbe
    from sklearn.linear_model import LogisticRegression

    train, ytr = load(a.train)
    test, yte = load(a.test)
    load_before = os.getloadavg()
    sides = {"default": get_encoder("minilm", "cpu", "auto"), "int8": get_encoder("minilm?precision=int8", "cpu")}
    first_use = {}
    for name, enc in sides.items():  # compile (and for int8 quantise) before the clock
        t = time.perf_counter()
        enc.encode_text(train[: a.batch_size], a.batch_size)
        first_use[name] = round(time.perf_counter() - t, 1)
    best = {name: float("inf") for name in sides}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(a.repeat):
        for name, enc in sides.items():
            t = time.perf_counter()
            vectors[name] = enc.encode_text(train, a.batch_size)
            best[name] = min(best[name], time.perf_counter() - t)
    load_after = os.getloadavg()
    with torch.inference_mode():
        st = sides["default"].model
        ref_tr = st.encode(train, batch_size=a.batch_size, convert_to_numpy=True)
        ref_te = st.encode(test, batch_size=a.batch_size, convert_to_numpy=True)
    test_vectors = {name: enc.encode_text(test, a.batch_size) for name, enc in sides.items()}
    result = {"bench": "int8", "train": str(a.train), "test": str(a.test), "rows_timed": len(train),
              "batch_size": a.batch_size, "repeat": a.repeat,
              "machine": f"{os.uname().sysname} {os.uname().machine}, {os.cpu_count()} CPUs",
              "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                       capture_output=True, text=True).stdout.strip(),
              "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
              "first_use_seconds": first_use}
    preds: dict[str, dict[str, np.ndarray]] = {"sklearn": {}, "embstore_logreg": {}}
    for name, enc in sides.items():
        cos = cosines(np.concatenate([vectors[name], test_vectors[name]]), np.concatenate([ref_tr, ref_te]))
        preds["sklearn"][name] = LogisticRegression(max_iter=1000).fit(vectors[name], ytr).predict(test_vectors[name])
        preds["embstore_logreg"][name] = LinearProbe().fit(vectors[name], ytr).predict(test_vectors[name])
        result[name] = {"runtime": enc.runtime_in_use(), "seconds": round(best[name], 3),
                        "per_s": round(len(train) / best[name], 1), "cosine_rows": len(cos),
                        "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                        **{f"accuracy_{head}": float((preds[head][name] == yte).mean()) for head in preds}}
    result["speedup_int8"] = round(best["default"] / best["int8"], 3)
    for head, by in preds.items():
        result[f"changed_predictions_{head}"] = int((by["default"] != by["int8"]).sum())
    result["test_rows"] = len(test)
    line = json.dumps(result)
    print(line)
    if a.log:
        a.log.parent.mkdir(parents=True, exist_ok=True)
        with open(a.log, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
