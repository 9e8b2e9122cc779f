"""The Ray engine on a real local Ray (``ray.init(num_cpus=2)``, started once for the module): the store it makes is
the in-process engine's (ids, vectors, item metadata, counts and reasons), across blocks, inputs, a store that
already holds items, an interrupted run and the CLI; without Ray, a one-line error naming the extra."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from embstore.row_copies import copy_files

from conftest import HASH, committed, make_png, quarantine_lines, store_contents, write_csv, write_jsonl

ray = pytest.importorskip("ray")

BLOCK = 40  # commit_rows: the in-process chunks and the Ray blocks are then both 40 rows


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def open_store(path, block=BLOCK):
    from embstore import Store
    from embstore.config import Settings

    return Store.open(path, settings=Settings.resolve(device="cpu", commit_rows=block))


def rows(n=200):
    """Rows with repeats within and across blocks: same row again (a duplicate), same id with other content or
    other values (quarantined), an empty text (quarantined), and contents shared by several ids (embedded once)."""
    out = [{"id": f"r{i}", "text": f"the word{i % 23} and the thing{i % 11}", "label": i % 3} for i in range(n)]
    out[7]["text"] = " "
    out += [dict(out[3]), dict(out[n * 3 // 4])]  # duplicates, from an earlier block
    out += [{"id": "r5", "text": "new content", "label": 2}]  # other content, earlier block
    out += [{"id": "r6", "text": out[6]["text"], "label": 9}]  # other values, earlier block
    out.insert(12, dict(out[10]))  # a duplicate within a block
    return out


COUNTS = ("read", "added", "duplicates", "quarantined", "embedded", "reused", "reasons", "files")


def assert_same(local_store, ray_store, local_report, ray_report, collection="docs", exact=True):
    a_items, a_vec, a_rows = store_contents(local_store, collection)
    b_items, b_vec, b_rows = store_contents(ray_store, collection)
    assert a_items == b_items
    assert a_vec.keys() == b_vec.keys() and a_rows == b_rows
    for k in a_vec:
        if exact:
            np.testing.assert_array_equal(a_vec[k], b_vec[k])
        else:  # a matrix product: an actor's BLAS runs on one thread, so the last bit may differ
            np.testing.assert_allclose(a_vec[k], b_vec[k], rtol=0, atol=1e-6)
    if local_report is not None:
        assert ray_report.engine == "ray"
        assert {k: getattr(ray_report, k) for k in COUNTS} == {k: getattr(local_report, k) for k in COUNTS}


def both(tmp_path, src, **kw):
    a, b = open_store(tmp_path / "local"), open_store(tmp_path / "ray")
    ra = a.ingest(src, "docs", encoder=HASH, **kw)
    rb = b.ingest(src, "docs", encoder=HASH, engine="ray", **kw)
    return a, b, ra, rb


def test_csv_same_store_as_in_process(cluster, tmp_path):
    src = write_csv(tmp_path / "docs.csv", rows())
    a, b, ra, rb = both(tmp_path, src)
    assert_same(a, b, ra, rb)
    assert rb.read == rb.added + rb.duplicates + rb.quarantined == 205
    assert (rb.added, rb.duplicates, rb.quarantined) == (199, 3, 3) and rb.embedded + rb.reused == 199
    assert rb.reasons == {"empty text in column 'text'": 1, "id already in collection with different content": 1,
                          "id repeated in input with other values": 1}
    records = quarantine_lines(b.root, rb.quarantine_file)
    assert records == quarantine_lines(a.root, ra.quarantine_file)  # rows, reasons, data, source: the same records
    assert records[-1]["row"] == 205 and records[-1]["data"] == {"id": "r6", "text": rows()[204]["text"], "label": 9}
    # shards listed one block at a time, named by the run, each with its part number
    shards = b.manifest["collections"]["docs"]["item_shards"]
    assert len(shards) > 3 and all("/part-r" in s["file"] and "part" in s for s in shards)
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parents[1] / "schemas" / "manifest.schema.json").read_text())
    jsonschema.validate(b.manifest, schema)


def test_jsonl_and_parquet(cluster, tmp_path):
    data = [{"text": f"line {i % 31} of {i % 7}", "n": i % 5} for i in range(150)]
    lines = [json.dumps(r) for r in data]
    lines.insert(20, "{not json")  # the reader's bad row: quarantined by its line
    lines += [json.dumps(data[0])]  # the same row again: the same row-hash id, a duplicate
    src = write_jsonl(tmp_path / "docs.jsonl", lines)
    a, b, ra, rb = both(tmp_path / "j", src)
    assert_same(a, b, ra, rb)
    assert rb.reasons == {"invalid JSON": 1} and rb.duplicates == 1
    assert quarantine_lines(b.root, rb.quarantine_file)[0]["line"] == 21

    pq.write_table(pa.Table.from_pylist(data), tmp_path / "docs.parquet")
    a, b, ra, rb = both(tmp_path / "p", tmp_path / "docs.parquet")
    assert_same(a, b, ra, rb)


def test_into_a_store_that_has_items(cluster, tmp_path):
    """A second file against what is stored: duplicates, other values, vectors reused from committed shards."""
    first = rows(120)
    second = [dict(r) for r in first[60:]] + [{"id": f"n{i}", "text": first[i]["text"], "label": 0} for i in range(50)]
    second[0]["label"] = 7  # an id stored with other values
    src1, src2 = write_csv(tmp_path / "a.csv", first), write_csv(tmp_path / "b.csv", second)
    a, b = open_store(tmp_path / "local"), open_store(tmp_path / "ray")
    a.ingest(src1, "docs", encoder=HASH)
    b.ingest(src1, "docs", encoder=HASH)
    ra = a.ingest(src2, "docs")
    rb = b.ingest(src2, "docs", engine="ray")
    assert_same(a, b, ra, rb)
    assert rb.reused >= 49 and "id already in collection with other values in label" in rb.reasons


def test_interrupted_run_then_rerun_finishes(cluster, tmp_path, monkeypatch):
    from embstore.writer import SpaceWriter

    src = write_csv(tmp_path / "docs.csv", rows())
    b = open_store(tmp_path / "ray")
    listed = SpaceWriter.list_shards
    calls = []

    def killed_after_two(self, *args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the driver dies between two commits
        calls.append(1)
        return listed(self, *args, **kwargs)

    monkeypatch.setattr(SpaceWriter, "list_shards", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        b.ingest(src, "docs", encoder=HASH, engine="ray")
    monkeypatch.undo()
    b.refresh()
    coll = b.manifest["collections"]["docs"]
    committed = 2 * BLOCK - 2  # the first block has an empty text and a duplicate
    assert len(coll["item_shards"]) == 2 and coll["spaces"]["hash64"]["rows"] == committed
    unlisted = [p for p in (b.root / "collections/docs/items").iterdir()  # (a listed shard's row copy is listed)
                if p.name not in {f.rsplit("/", 1)[1] for s in coll["item_shards"] for f in copy_files(s)}]
    assert unlisted  # written by workers, never listed: invisible
    assert len(b.embeddings("docs")[0]) == committed

    rb = b.ingest(src, "docs", encoder=HASH, engine="ray")
    assert not any(p.exists() for p in unlisted)  # the re-run deletes what the killed one never listed
    a = open_store(tmp_path / "local")
    a.ingest(src, "docs", encoder=HASH)
    assert_same(a, b, None, None)
    assert rb.duplicates == committed + 3 and rb.read == rb.added + rb.duplicates + rb.quarantined


def test_image_folder(cluster, tmp_path):
    for i in range(12):
        make_png(tmp_path / "imgs" / ("a" if i % 2 else "b") / f"{i}.png", i % 9)  # 3 repeated contents
    (tmp_path / "imgs" / "a" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "imgs" / "notes.txt").write_text("ignored")
    a, b = open_store(tmp_path / "local", block=5), open_store(tmp_path / "ray", block=5)
    ra = a.ingest(tmp_path / "imgs", "pics", encoder=HASH)
    rb = b.ingest(tmp_path / "imgs", "pics", encoder=HASH, engine="ray")
    assert_same(a, b, ra, rb, "pics", exact=False)
    assert rb.quarantined == 1 and rb.ignored_files == ra.ignored_files == 1


def test_without_ray_one_line_error(tmp_path, monkeypatch):
    from embstore.errors import InputError

    src = write_csv(tmp_path / "docs.csv", rows(10))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    s = open_store(tmp_path / "s")
    with pytest.raises(InputError) as e:
        s.ingest(src, "docs", encoder=HASH, engine="ray")
    assert "pip install 'embstore[ray]'" in str(e.value) and "\n" not in str(e.value)
    assert "docs" not in s.refresh().manifest["collections"]  # nothing was written


def test_cli_engine_ray(cluster, tmp_path):
    from embstore_cli.main import cli

    src = write_csv(tmp_path / "docs.csv", rows(60))
    store = tmp_path / "store"
    r = CliRunner().invoke(cli, ["ingest", str(src), "--store", str(store), "-c", "docs", "--encoder", HASH,
                                 "--engine", "ray", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    assert out["engine"] == "ray" and out["added"] == 59 and out["quarantined"] == 3
    r = CliRunner().invoke(cli, ["ingest", str(src), "--store", str(store), "-c", "docs", "--address", "x:1"])
    assert r.exit_code == 2 and "--engine ray" in r.output


def test_error_on_the_cluster_is_the_one_line_error(cluster, tmp_path):
    """An InputError raised in the read task (a column that does not convert to the stored type) reaches the caller
    as itself, as in-process; nothing of the failed ingest is listed."""
    from embstore.errors import InputError

    b = open_store(tmp_path / "ray")
    b.ingest(write_csv(tmp_path / "a.csv", rows(20)), "docs", encoder=HASH, engine="ray")
    before = b.refresh().manifest["collections"]["docs"]["item_shards"]
    bad = write_csv(tmp_path / "b.csv", [{"id": "x1", "text": "a text", "label": "not a number"}])
    with pytest.raises(InputError) as e:
        b.ingest(bad, "docs", engine="ray")
    assert "column 'label'" in str(e.value) and "\n" not in str(e.value)
    assert b.refresh().manifest["collections"]["docs"]["item_shards"] == before


def test_workers_run_the_runtime_asked_for(cluster, tmp_path, monkeypatch, runtime="torch"):
    """The actors build their encoder with the store's runtime setting (they took `auto`, a compiled runtime where
    one is installed, whatever was asked), and the report says what ran the model on them."""
    import timm
    import torch
    from safetensors.torch import save_file

    from embstore import Store
    from embstore.config import Settings
    from embstore.encoders import runtime as rt

    if runtime != "torch" and not rt.installed(runtime):
        pytest.skip(f"{runtime} is not installed")
    monkeypatch.setenv("EMBSTORE_CACHE", str(tmp_path / "cache"))  # the actors inherit the driver's environment
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_file(timm.create_model("test_efficientnet", pretrained=False).state_dict(), str(weights))
    for i in range(rt.MIN_ROWS + 4):  # a batch big enough for the compiled runtime (smaller ones run in torch)
        make_png(tmp_path / "imgs" / f"{i}.png", i)
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", runtime=runtime))
    r = store.ingest(tmp_path / "imgs", "pics", encoder=f"timm:test_efficientnet@{weights}", engine="ray")
    assert r.added == rt.MIN_ROWS + 4 and r.runtime.startswith(runtime), r.runtime


def test_driver_killed_by_sigkill_then_rerun_equals_in_process(cluster, tmp_path):
    """A real kill, not an exception: `embstore ingest --engine ray` joins this module's cluster as a driver of its
    own, is sent SIGKILL once a few chunks are committed, and the store still opens with whole commits only; the same
    command's re-run (here, through the API on the same cluster) finishes it into the in-process engine's store."""
    import os
    import signal
    import subprocess
    import time

    n = 3000  # 75 chunks of 40: the driver is killed long before its end
    src = write_csv(tmp_path / "docs.csv", [{"id": f"r{i}", "text": f"word{i % 97} thing{i % 13} n{i}", "label": i % 3}
                                            for i in range(n)])
    root = tmp_path / "ray"
    address = ray.get_runtime_context().gcs_address
    env = dict(os.environ, EMBSTORE_COMMIT_ROWS=str(BLOCK))
    cmd = [sys.executable, "-c", "import sys; from embstore_cli.main import main; sys.argv[0] = 'embstore'; main()",
           "ingest", str(src), "--store", str(root), "-c", "docs", "--encoder", HASH, "--engine", "ray",
           "--address", address, "--device", "cpu"]

    log = tmp_path / "driver.err"  # (a file: a pipe nobody reads while it runs could fill and stall the driver)
    with open(log, "wb") as err:
        driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 240
    while committed(root) < 3 * BLOCK and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert driver.poll() is None, "the driver ended before 3 commits: " + log.read_text()[-2000:]
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    shards = committed(root) // BLOCK
    assert 3 <= shards < n // BLOCK  # killed in the middle

    b = open_store(root)
    coll = b.manifest["collections"]["docs"]
    assert coll["spaces"]["hash64"]["rows"] == len(b.embeddings("docs")[0]) == shards * BLOCK  # whole commits only
    rb = b.ingest(src, "docs", encoder=HASH, engine="ray")
    assert rb.read == n and rb.added == n - shards * BLOCK and rb.duplicates == shards * BLOCK
    a = open_store(tmp_path / "local")
    a.ingest(src, "docs", encoder=HASH)
    assert_same(a, b, None, None)
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
