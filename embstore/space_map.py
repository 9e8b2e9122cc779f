"""A map of a space: a 2D projection of its vectors (UMAP when umap-learn is installed, else PCA), kept in the store
beside the space, and one self-contained HTML page that draws it with plotly.js embedded (no network needed).

The projection is computed once for a seeded sample of at most ``sample`` items and kept as a small Parquet file of
``id, x, y`` that the space's manifest entry names (``projection``), committed under the writer lock like every
other file; it is used again until the space changes (rows added, a collection made anew), and computed again then.
The page colours the points by a label, a column or a head's stored predictions, rings the items whose prediction
differs from their label, shows an item's text (or a thumbnail of its image) on hover, and has a filter box.

plotly, umap-learn and scikit-learn are imported inside the functions that use them (``pip install
'embstore[serve]'`` brings plotly).
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import DamagedStoreError, InputError, NotFoundError, StoreLockedError, StoreWriteError
from .manifest import now
from .storage import read_table, stored_schema, write_shard

DEFAULT_SAMPLE = 100_000  # points a map shows at most (a seeded sample of a larger space)
GL_FROM = 10_000  # from this many points the map draws with WebGL (scattergl), below with SVG
THUMBNAILS = 1_000  # images of a map that get an inline thumbnail (shown on hover): at most ~2 KB each
THUMB_PX = 64  # a thumbnail's longest side
TEXT_CHARS = 160  # of an item's text in its hover (and what the filter box searches)
VALUE_CHARS = 40  # of another column's value in the hover
HOVER_COLUMNS = 8  # other columns shown on hover, at most
MAX_CATEGORIES = 30  # colours of a categorical colouring; the rarest values beyond share "(other)"
SERVE_EXTRA = "pip install 'embstore[serve]'"
METHODS = ("umap", "pca")


@dataclass
class Projection:
    """A space's 2D projection: ``xy[i]`` is the point of item ``ids[i]``."""

    collection: str
    space: str
    ids: list[str]
    xy: np.ndarray
    method: str
    items: int  # the space's rows when it was computed (ids are all of them, or a seeded sample)
    reused: bool  # read from the store, not computed
    kept: bool  # in the store now (computed and committed, or reused)
    file: str | None = None
    not_kept: str | None = None  # why a computed projection could not be kept (the store was locked, read-only)


def choose_method(method: str | None) -> str:
    """``umap`` or ``pca``: as asked, or (None, "auto") UMAP when umap-learn is installed, else PCA."""
    import importlib.util

    if method in (None, "auto"):
        return "umap" if importlib.util.find_spec("umap") is not None else "pca"
    if method not in METHODS:
        raise InputError(f"projection method {method!r} is not known; use auto, umap or pca")
    if method == "umap" and importlib.util.find_spec("umap") is None:
        raise InputError("umap-learn is not installed: pip install umap-learn (or pip install 'embstore[umap]'), "
                         "or use the PCA projection (--method pca)")
    return method


def projection(store: Any, collection: str, space: str | None = None, *, method: str | None = None,
               sample: int = DEFAULT_SAMPLE, seed: int = 0, keep: bool = True) -> Projection:
    """The 2D projection of a space, for at most ``sample`` of its items (a seeded sample when it has more).

    Read from the store when one is kept for the space as it is now (same rows, same last shard), with at least as
    many points and of the ``method`` asked (None: any); else computed (``choose_method``) and kept: the file is
    written and the manifest committed under the writer lock, after the work (done without it). When the lock is
    held by another writer, or the store cannot be written, the projection is returned all the same, not kept;
    ``keep=False`` (a read-only service) never writes."""
    from .lookup import vectors_at

    sample = _check_sample(sample)
    space = store.space_name(collection, space)
    sp = store.space(collection, space)
    rows = sp["rows"]
    if not rows:
        raise InputError(f"space {collection}.{space} has no vectors yet; ingest into it first")
    want = min(sample, rows)
    entry = sp.get("projection")
    if entry and entry["of"] == _signature(sp) and entry["points"] >= want \
            and method in (None, "auto", entry["method"]) and (entry["points"] == rows or entry["seed"] == seed):
        try:
            t = read_table(store.root, entry["file"], ["id", "x", "y"])
        except DamagedStoreError:  # derived data: computed again below
            t = None
        if t is not None and t.num_rows == entry["points"]:
            xy = np.stack([t.column("x").to_numpy(), t.column("y").to_numpy()], axis=1).astype(np.float32)
            return Projection(collection, space, t.column("id").to_pylist(), xy, entry["method"], rows, True, True,
                              entry["file"])
    chosen = choose_method(method)
    positions = np.arange(rows) if want == rows else \
        np.sort(np.random.default_rng(seed).choice(rows, size=want, replace=False))
    ids, X = vectors_at(store, collection, space, positions, with_ids=True)
    xy, chosen = _project(X, chosen, seed)
    out = Projection(collection, space, ids, xy, chosen, rows, False, False)
    if keep:
        _keep(store, out, _signature(sp), seed)
    return out


def _check_sample(sample: Any) -> int:
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 1:
        raise InputError(f"sample must be a whole number of points, 1 or more, not {sample!r}")
    return int(sample)


def _signature(sp: dict[str, Any]) -> dict[str, Any]:
    """What a kept projection was computed from: the space's rows and its last shard (a space only grows by
    shards; one deleted and made again has other shard names)."""
    return {"rows": sp["rows"], "last_shard": sp["shards"][-1]["file"] if sp["shards"] else None}


def _project(X: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str]:
    """(n, 2) float32 coordinates of the rows of ``X`` by cosine geometry, and the method that made them (PCA for
    fewer than 5 points, which UMAP cannot embed)."""
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    n = len(X)
    if method == "umap" and n >= 5:
        import warnings

        import umap

        with warnings.catch_warnings():  # (n_jobs is 1 with a random_state: reproducible, said once per call)
            warnings.simplefilter("ignore", UserWarning)
            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), min_dist=0.1, metric="cosine",
                                random_state=seed)
            return np.asarray(reducer.fit_transform(X), np.float32), "umap"
    from sklearn.decomposition import PCA

    k = min(2, n, X.shape[1])
    xy = np.zeros((n, 2), np.float32)
    if n > 1:
        xy[:, :k] = PCA(n_components=k, random_state=seed).fit_transform(X)
    return xy, "pca"


def _keep(store: Any, proj: Projection, signature: dict[str, Any], seed: int) -> None:
    """Write the projection beside its space and name it in the manifest (one commit); the file it replaces is
    retired (readers of older snapshots may still read it)."""
    try:
        with store.writing():
            sp = store.manifest["collections"].get(proj.collection, {}).get("spaces", {}).get(proj.space)
            if sp is None or _signature(sp) != signature:
                proj.not_kept = "the space changed while it was projected"
                return
            rel = f"collections/{proj.collection}/spaces/{proj.space}/projection-{store.new_part():06d}.parquet"
            table = pa.table({"id": pa.array(proj.ids, pa.string()), "x": pa.array(proj.xy[:, 0], pa.float32()),
                              "y": pa.array(proj.xy[:, 1], pa.float32())})
            write_shard(store.root, rel, table)
            old = sp.get("projection")
            sp["projection"] = {"file": rel, "method": proj.method, "points": len(proj.ids), "seed": seed,
                                "of": signature, "built": now()}
            if old:
                store.retire([old["file"]])
            store.commit()
    except StoreLockedError:
        proj.not_kept = "another process is writing the store"
        return
    except (StoreWriteError, PermissionError) as e:
        proj.not_kept = f"the store cannot be written ({str(e).split(';')[0]})"
        return
    proj.kept, proj.file = True, rel


# ---------------------------------------------------------------------------------------------------------- the page
@dataclass
class MapPage:
    """A map's page and what it shows (the CLI's report)."""

    html: str
    collection: str
    space: str
    items: int
    shown: int
    method: str
    reused: bool
    kept: bool
    color: str
    color_column: str | None
    head: str | None
    mismatches: int | None
    thumbnails: int
    projection_file: str | None
    not_kept: str | None = None
    figure: dict[str, Any] = field(default_factory=dict, repr=False)

    def report(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("html", "figure")}
        return out | {"bytes": len(self.html.encode())}


def map_html(store: Any, collection: str, *, space: str | None = None, color: str = "label",
             sample: int = DEFAULT_SAMPLE, seed: int = 0, keep: bool = True) -> str:
    """One self-contained HTML page (plotly.js inside: it works offline) mapping a space's items; see ``map_page``."""
    return map_page(store, collection, space=space, color=color, sample=sample, seed=seed, keep=keep).html


def map_figure_json(store: Any, collection: str, *, space: str | None = None, color: str = "label",
                    sample: int = DEFAULT_SAMPLE, seed: int = 0) -> str:
    """The map's plotly figure as JSON (``Plotly.newPlot(div, fig.data, fig.layout)``), without the page around it."""
    import plotly.io as pio

    page = map_page(store, collection, space=space, color=color, sample=sample, seed=seed)
    return pio.to_json(page.figure, validate=False)


def map_page(store: Any, collection: str, *, space: str | None = None, color: str = "label",
             sample: int = DEFAULT_SAMPLE, seed: int = 0, method: str | None = None, keep: bool = True) -> MapPage:
    """The page and its report. ``color``: "label" (the collection's label: a ``label`` column, else the label
    column of the latest head trained on it, else an image folder's ``folder``), any item column, or
    ``prediction:HEAD`` (the head's stored predictions; items whose prediction is not their label in the head's
    label column are ringed). With label or column colours, the latest head that predicted the collection and was
    trained on that column rings its mistakes too. At most ``sample`` points (seeded)."""
    go = _plotly()
    from .lookup import item_rows

    coll = store.collection(collection)
    columns = [c for c in (stored_schema(store.root, coll["item_shards"]) or pa.schema([])).names
               if c not in ("id", "content_hash")]
    color_column, head = _colouring(store, collection, coll, columns, color)
    proj = projection(store, collection, space, method=method, sample=sample, seed=seed, keep=keep)
    ids, xy = proj.ids, proj.xy
    want = min(_check_sample(sample), len(ids))
    if want < len(ids):
        keep = np.sort(np.random.default_rng(seed).choice(len(ids), size=want, replace=False))
        ids, xy = [ids[i] for i in keep], xy[keep]
    rows = item_rows(store, collection, ids)
    content = coll["content_column"]
    predicted = _predictions(store, collection, head, set(ids)) if head else {}
    if color.startswith("prediction:"):
        values = [predicted.get(i, (None, None))[0] for i in ids]
    else:
        values = [(rows.get(i) or {}).get(color_column) if color_column else None for i in ids]
    truth_column = _head_label_column(store, head) if head else None
    wrong = np.zeros(len(ids), bool)
    if truth_column:
        for n, i in enumerate(ids):
            truth, guess = (rows.get(i) or {}).get(truth_column), predicted.get(i, (None, None))[0]
            wrong[n] = guess is not None and truth is not None and not isinstance(truth, (list, tuple)) \
                and str(truth) != str(guess)
    shown = [c for c in columns if c != content][:HOVER_COLUMNS]
    custom = []
    for i in ids:
        row = rows.get(i) or {}
        cells = [i, _short(row.get(content), TEXT_CHARS) if content else ""]
        cells += [_short(row.get(c), VALUE_CHARS) for c in shown]
        if head:
            guess, conf = predicted.get(i, (None, None))
            cells.append(f"{guess} ({conf:.2f})" if guess is not None else "(none)")
        custom.append(cells)
    names = ["id"] + shown + ([f"predicted by {head}"] if head else [])
    hover = "<b>%{customdata[1]}</b><br>" + "<br>".join(
        f"{html.escape(n)}: %{{customdata[{k if k == 0 else k + 1}]}}" for k, n in enumerate(names)) + \
        "<extra>%{fullData.name}</extra>"
    scatter = go.Scattergl if len(ids) >= GL_FROM else go.Scatter
    traces = _traces(go, scatter, xy, values, custom, hover, color_column or (f"{head} predictions" if head else None))
    if wrong.any():
        at = np.flatnonzero(wrong)
        traces.append(scatter(x=_coords(xy[at, 0]), y=_coords(xy[at, 1]), mode="markers", meta="mismatch",
                              name=f"prediction ≠ {truth_column} ({len(at):,})", customdata=[custom[n] for n in at],
                              hovertemplate=hover, marker={"symbol": "circle-open", "size": 11, "color": "#111",
                                                           "line": {"width": 1.5}}))
    label = {"umap": "UMAP", "pca": "PCA"}[proj.method]
    stats = (f"showing {len(ids):,} of {proj.items:,} items" + (f" (a sample, seed {seed})" if len(ids) < proj.items
                                                                 else "") +
             f" · {label} of {collection}.{proj.space}" +
             (f" · colour: {html.escape(color_column or head or '')}" if color_column or head else "") +
             (f" · ringed: {int(wrong.sum()):,} whose prediction by {html.escape(head)} is not their "
              f"{html.escape(truth_column)}" if head and truth_column else ""))
    layout = {"margin": {"l": 10, "r": 10, "t": 10, "b": 10}, "hovermode": "closest", "plot_bgcolor": "#fafafa",
              "xaxis": {"visible": False}, "yaxis": {"visible": False, "scaleanchor": "x"},
              "legend": {"itemsizing": "constant"}, "dragmode": "pan" if len(ids) > 50_000 else "zoom"}
    fig = go.Figure(traces, layout)
    thumbs = _thumbnails(ids, rows, content, seed) if coll["modality"] == "image" and content else {}
    page = _page(fig, collection, proj.space, stats, thumbs)
    return MapPage(page, collection, proj.space, proj.items, len(ids), proj.method, proj.reused, proj.kept, color,
                   color_column, head, int(wrong.sum()) if truth_column else None, len(thumbs), proj.file,
                   proj.not_kept, fig.to_plotly_json())


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise InputError(f"the map needs plotly, which is not installed: {SERVE_EXTRA}") from None
    return go


def _colouring(store: Any, collection: str, coll: dict[str, Any], columns: list[str],
               color: str) -> tuple[str | None, str | None]:
    """(the item column to colour by, the head whose stored predictions are shown) for ``color``."""
    preds = coll.get("predictions") or {}
    heads = store.manifest["heads"]
    if color.startswith("prediction:"):
        head = color[len("prediction:"):]
        if head not in preds:
            raise NotFoundError(f"collection {collection!r} has no stored predictions of head {head!r} (heads that "
                                f"predicted it: {', '.join(sorted(preds)) or 'none'}); run embstore predict --head "
                                f"{head} --collection {collection}")
        return None, head
    if color == "label" and "label" not in columns:
        trained = [n for n, h in heads.items() if h["versions"] and h["versions"][-1]["collection"] == collection
                   and h["versions"][-1]["label_column"] in columns]
        if trained:
            from .heads import latest_head

            column = heads[latest_head(heads, trained)]["versions"][-1]["label_column"]
        else:
            column = "folder" if coll["modality"] == "image" and "folder" in columns else None
    elif color not in columns:
        raise InputError(f"cannot colour by {color!r}: collection {collection!r} has columns "
                         f"{', '.join(columns) or 'none'}; give one of them, label, or prediction:HEAD")
    else:
        column = color
    fits = [n for n in preds if n in heads and _head_label_column(store, n) == column] if column else []
    if not fits:
        return column, None
    from .heads import latest_head

    return column, latest_head(heads, fits)


def _head_label_column(store: Any, head: str) -> str | None:
    """The label column of the head version whose predictions a collection stores (None: labels from a file)."""
    versions = store.manifest["heads"].get(head, {}).get("versions", [])
    return versions[-1]["label_column"] if versions else None


def _predictions(store: Any, collection: str, head: str, wanted: set[str]) -> dict[str, tuple[str, float]]:
    """id -> (label, confidence) of a head's stored predictions, for the ids ``wanted`` (a shard at a time)."""
    import pyarrow.compute as pc

    out: dict[str, tuple[str, float]] = {}
    keys = pa.array(sorted(wanted), pa.string())
    for shard in store.collection(collection)["predictions"][head]["shards"]:
        t = read_table(store.root, shard["file"], ["id", "label", "confidence"])
        t = t.filter(pc.is_in(t.column("id"), value_set=keys))
        for i, label, conf in zip(*(t.column(c).to_pylist() for c in ("id", "label", "confidence"))):
            out[i] = (label, float(conf))
    return out


PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1",
           "#636363", "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8", "#e7969c", "#a55194", "#cedb9c", "#fdae6b",
           "#c49c94", "#dbdb8d", "#9edae5"]
GREY = "#b0b0b0"


def _traces(go: Any, scatter: Any, xy: np.ndarray, values: list[Any], custom: list[list[Any]], hover: str,
            title: str | None) -> list[Any]:
    """The points: one trace per value (a legend entry each; the rarest past MAX_CATEGORIES as one "(other)"), or
    one trace with a colour scale for a numeric column of many values, or one plain trace when uncoloured."""
    marker = {"size": 6 if len(xy) < GL_FROM else 4, "opacity": 0.8}
    if all(v is None for v in values):
        return [scatter(x=_coords(xy[:, 0]), y=_coords(xy[:, 1]), mode="markers", name="items", meta="points",
                        customdata=custom, hovertemplate=hover, marker=marker | {"color": PALETTE[0]})]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None)
    distinct = {_category(v) for v in values}
    if numeric and len(distinct) > MAX_CATEGORIES:
        c = [float(v) if v is not None and math.isfinite(v) else None for v in values]
        return [scatter(x=_coords(xy[:, 0]), y=_coords(xy[:, 1]), mode="markers", name=title, meta="points",
                        customdata=custom, hovertemplate=hover,
                        marker=marker | {"color": c, "colorscale": "Viridis", "showscale": True,
                                         "colorbar": {"title": {"text": title}}})]
    cats = [_category(v) for v in values]
    counts: dict[str, int] = {}
    for c in cats:
        counts[c] = counts.get(c, 0) + 1
    ranked = sorted(counts, key=lambda c: (c == "(none)", -counts[c], c))
    named = ranked if len(ranked) <= MAX_CATEGORIES else ranked[:MAX_CATEGORIES - 1]
    other = f"(other: {len(ranked) - len(named)} values)"
    group = {c: c if c in set(named) else other for c in ranked}
    order = sorted(named, key=_natural) + ([other] if len(named) < len(ranked) else [])
    members: dict[str, list[int]] = {g: [] for g in order}
    for n, c in enumerate(cats):
        members[group[c]].append(n)
    traces = []
    for k, g in enumerate(order):
        at = np.asarray(members[g], np.int64)
        colour = GREY if g in ("(none)", other) else PALETTE[k % len(PALETTE)]
        traces.append(scatter(x=_coords(xy[at, 0]), y=_coords(xy[at, 1]), mode="markers", name=f"{g} ({len(at):,})",
                              meta="points", customdata=[custom[n] for n in at], hovertemplate=hover,
                              marker=marker | {"color": colour}, legendgroup=g))
    return traces


def _category(v: Any) -> str:
    return "(none)" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _natural(label: str) -> tuple:
    """Labels in their natural order: numbers by value (2 before 10), then text."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def _coords(a: np.ndarray) -> list[float]:
    """Coordinates as plain JSON numbers (the page's filter rebuilds the traces from them)."""
    return np.round(np.asarray(a, np.float64), 4).tolist()


def _short(v: Any, n: int) -> str:
    """A value for the hover: text cut to ``n`` characters, HTML-escaped (plotly's hover reads a little HTML)."""
    if v is None:
        return ""
    s = " ".join(str(v).split())
    return html.escape(s if len(s) <= n else s[:n - 1] + "…", quote=False)


def _thumbnails(ids: list[str], rows: dict[str, dict[str, Any]], content: str, seed: int) -> dict[str, str]:
    """id -> a small data-URI thumbnail (PNG up to 32 px, else JPEG; at most THUMB_PX a side) for a seeded sample
    of at most THUMBNAILS of the points; an image that cannot be read gets none (its hover shows its path)."""
    from PIL import Image

    picks = np.random.default_rng(seed).permutation(len(ids))[:THUMBNAILS]
    out: dict[str, str] = {}
    for n in sorted(picks.tolist()):
        path = (rows.get(ids[n]) or {}).get(content)
        if not path:
            continue
        try:
            with Image.open(path) as img:
                img.thumbnail((THUMB_PX, THUMB_PX))
                small = max(img.size) <= 32
                img = img.convert("L" if img.mode in ("L", "1", "I;16") else "RGB")
                buf = io.BytesIO()
                img.save(buf, "PNG" if small else "JPEG", **({} if small else {"quality": 75}))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        out[ids[n]] = f"data:image/{'png' if small else 'jpeg'};base64," + base64.b64encode(buf.getvalue()).decode()
    return out


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element (as plotly writes its own)."""
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>embstore map: {title}</title>
<style>
body {{ margin: 0; font: 14px system-ui, sans-serif; color: #222; }}
header {{ display: flex; gap: 14px; align-items: center; flex-wrap: wrap; padding: 8px 14px;
         border-bottom: 1px solid #ddd; }}
header h1 {{ font-size: 16px; margin: 0; }}
#filter {{ padding: 4px 8px; width: 22em; }}
#thumb {{ position: fixed; right: 18px; top: 70px; display: none; background: #fff; border: 1px solid #ccc;
         padding: 4px; z-index: 10; }}
#thumb img {{ width: 128px; image-rendering: pixelated; display: block; }}
</style></head>
<body>
<header><h1>{title}</h1><span id="stats">{stats}</span>
<input id="filter" type="search" placeholder="filter by text" autocomplete="off" aria-label="filter by text">
<span id="visible"></span></header>
<div id="thumb"><img alt="thumbnail"></div>
{plot}
</body></html>
"""

# After the plot is drawn: the filter box (restyles every trace to the points whose text or id holds the words
# typed) and the thumbnail shown beside the hover.
SCRIPT = """
var gd = document.getElementById('{plot_id}'), THUMBS = %s;
var full = gd.data.map(function (t) {
  return {x: t.x, y: t.y, cd: t.customdata, c: t.marker.color,
          key: t.customdata.map(function (d) { return (d[1] + ' ' + d[0]).toLowerCase(); })};
});
var box = document.getElementById('filter'), said = document.getElementById('visible'), timer = null;
function filter() {
  var q = box.value.trim().toLowerCase(), u = {x: [], y: [], customdata: [], 'marker.color': []}, n = 0;
  full.forEach(function (t, k) {
    var keep = [];
    for (var i = 0; i < t.key.length; i++) { if (!q || t.key[i].indexOf(q) >= 0) { keep.push(i); } }
    var pick = function (a) { return keep.map(function (i) { return a[i]; }); };
    u.x.push(pick(t.x)); u.y.push(pick(t.y)); u.customdata.push(pick(t.cd));
    u['marker.color'].push(Array.isArray(t.c) ? pick(t.c) : t.c);
    if (gd.data[k].meta === 'points') { n += keep.length; }
  });
  Plotly.restyle(gd, u);
  said.textContent = q ? n.toLocaleString('en') + (n === 1 ? ' item matches' : ' items match') : '';
}
box.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(filter, 150); });
var panel = document.getElementById('thumb'), img = panel.querySelector('img');
gd.on('plotly_hover', function (ev) {
  var src = THUMBS[ev.points[0].customdata[0]];
  if (src) { img.src = src; panel.style.display = 'block'; }
});
gd.on('plotly_unhover', function () { panel.style.display = 'none'; });
"""


def _page(fig: Any, collection: str, space: str, stats: str, thumbs: dict[str, str]) -> str:
    import plotly.io as pio

    plot = pio.to_html(fig, include_plotlyjs=True, full_html=False, div_id="map", validate=False,
                       default_height="calc(100vh - 56px)", post_script=SCRIPT % _script_json(thumbs),
                       config={"displaylogo": False, "scrollZoom": True, "responsive": True})
    return PAGE.format(title=html.escape(f"{collection}.{space}"), stats=stats, plot=plot)
