"""Scratch: MNIST's 3,000 images (../shared/datasets/mnist) embedded by EfficientNet-Lite0, cached as /tmp/al/mnist.npz."""
import sys
import numpy as np
sys.path.insert(0, "/work/main")
import pyarrow.csv as pc
from PIL import Image
from embstore.encoders import get_encoder
root = "/work/shared/datasets/mnist/"
t = pc.read_csv(root + "labels.csv").to_pydict()
enc = get_encoder("efficientnet-lite0")
X = enc.encode_images([Image.open(root + p).convert("RGB") for p in t["path"]])
y, s = np.asarray(t["label"]).astype(str), np.asarray(t["split"])
np.savez("/tmp/al/mnist.npz", Xtr=X[s == "train"], ytr=y[s == "train"], Xte=X[s == "test"], yte=y[s == "test"])
print(X.shape)
