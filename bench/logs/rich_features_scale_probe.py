import sys, json, numpy as np
sys.path.insert(0, "/work/wt-layers")
from embstore import Store
from embstore.estimators import LinearProbe
from sklearn.linear_model import LogisticRegression
task = sys.argv[1]
if task == "mnist":
    s = Store.open("/tmp/layers/mnist.store"); coll, lab = "mnist", "label"
    labels = dict(s.sql("SELECT id, CAST(label AS VARCHAR) FROM mnist").fetchall())
    split = dict(s.sql("SELECT id, split FROM mnist").fetchall())
else:
    s = Store.open("/tmp/layers/trec.store"); coll = "trec_train"
def get(space):
    ids, X = s.embeddings(coll, space); return ids, X
ids, P = get("efficientnet_lite0"); ids2, L = get("efficientnet_lite0_layers_all")
assert ids == ids2
y = np.array([labels[i] for i in ids]); te = np.array([split[i] == "test" for i in ids])
print("plain norm mean", np.linalg.norm(P, axis=1).mean())
dims = s.space(coll, "efficientnet_lite0_layers_all")["encoder"]["config"]["block_dims"]
b = np.cumsum([0, *dims]); k = len(dims)
blocks = [L[:, b[i]:b[i+1]] * np.sqrt(k) for i in range(k)]  # unit-norm blocks
def scheme(name):
    if name == "unit": return np.concatenate(blocks, 1) / np.sqrt(k)
    if name == "sqrtk": return np.concatenate(blocks, 1)
    if name == "sqrtd": return np.concatenate([bl * np.sqrt(d) for bl, d in zip(blocks, dims)], 1)
    if name.startswith("x"): return np.concatenate(blocks, 1) / np.sqrt(k) * float(name[1:])
rng = np.random.default_rng(42)
tr_idx = np.where(~te)[0]
shots = [np.concatenate([rng.choice(tr_idx[y[tr_idx] == c], 10, replace=False) for c in sorted(set(y))]) for _ in range(5)]
for name in sys.argv[2].split(","):
    X = P if name == "plain" else scheme(name)
    est = LinearProbe(C="auto").fit(X[~te], y[~te]); acc = float((est.predict(X[te]) == y[te]).mean())
    few = np.mean([(LogisticRegression(max_iter=100).fit(X[r], y[r]).predict(X[te]) == y[te]).mean() for r in shots])
    print(json.dumps({"scheme": name, "norm": float(np.linalg.norm(X, axis=1).mean()), "full": round(acc, 4), "C": est.C_, "ten_shot": round(float(few), 4)}), flush=True)
