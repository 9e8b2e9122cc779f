"""Diagnostic: embstore's text encoder against `SentenceTransformer.encode` on the very same model object, in one
process, so that only the call differs (no ingest, no store). Three ways, each run twice, at batch 64 and 256:
embstore's `encode_text` on all rows, stock `encode` on all rows, and embstore's call in 20,000-row pieces (the
ingest's commit chunks).

    python bench/text_ab.py TEXT_CSV [DEVICE]      # a CSV with a `text` column; DEVICE cpu (default) or cuda

Prints one line per run: seconds. (bench/embed_text.py measures the whole ingest against stock.)
"""
import csv
import sys
import time


def main() -> None:
    import torch

    from embstore.encoders import get_encoder

    with open(sys.argv[1], newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    dev = sys.argv[2] if len(sys.argv) > 2 else "cpu"
    enc = get_encoder("minilm", dev)
    model = enc.model
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    for bs in (64, 256):
        enc.encode_text(texts[:bs], bs)
        sync()
        runs = [("embstore encode_text", lambda: enc.encode_text(texts, bs)),
                ("stock SentenceTransformer.encode", lambda: model.encode(texts, batch_size=bs, convert_to_numpy=True)),
                ("embstore, 20,000-row pieces",
                 lambda: [enc.encode_text(texts[i:i + 20000], bs) for i in range(0, len(texts), 20000)])]
        for name, run in runs * 2:
            t = time.perf_counter()
            run()
            sync()
            print(f"batch {bs}, {name}: {time.perf_counter() - t:.3f} s", flush=True)


if __name__ == "__main__":
    main()
