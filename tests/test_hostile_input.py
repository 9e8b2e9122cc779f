"""Hostile input (issue 16, item 5): rows and files that are too big, decompression bombs, unreadable images in a
folder or a predict call, and what an ingest that creates nothing leaves behind. Each is quarantined with its reason
while the rest goes on (counts adding up), or refused in one line."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from embstore import Store
from embstore.errors import ImageTooLargeError, InputError
from embstore_cli.main import cli

from conftest import HASH, make_png, quarantine_lines, write_jsonl


def counts_add_up(r) -> bool:
    return r.read == r.added + r.duplicates + r.quarantined


# ------------------------------------------------------------------------------------------- decompression bombs
@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A 1-bit PNG of 13,000 x 13,000 = 169 Mpx (under PIL's own error limit of 179 Mpx): about 100 KB on disk,
    507 MB once decoded to RGB."""
    from PIL import Image

    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (13_000, 13_000)).save(path, optimize=False)
    assert path.stat().st_size < 200_000
    return path


@pytest.fixture()
def decoded_sizes(monkeypatch):
    """The sizes of the images PIL decodes while the test runs."""
    from PIL import ImageFile

    sizes: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def recording(self):
        sizes.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording)
    return sizes


def test_a_decompression_bomb_is_quarantined_from_its_header_never_decoded(tmp_path, bomb, decoded_sizes):
    folder = tmp_path / "imgs"
    for k in range(3):
        make_png(folder / f"ok{k}.png", k)
    os.link(bomb, folder / "bomb.png")
    store = Store.open(tmp_path / "s")
    r = store.ingest(folder, "pics", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (4, 3, 1) and counts_add_up(r)
    assert r.reasons == {"image too large": 1}
    [bad] = quarantine_lines(store.root, r.quarantine_file)
    assert bad["reason"].endswith("bomb.png: 13000 x 13000 = 169,000,000 pixels, over the limit of 67,108,864 "
                                  "(EMBSTORE_MAX_PIXELS); shrink the image, or raise the limit")
    assert (13_000, 13_000) not in decoded_sizes and (24, 24) in decoded_sizes


def test_the_pixel_limit_is_a_setting(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    make_png(folder / "small.png", 0, size=24)
    make_png(folder / "big.png", 1, size=40)
    monkeypatch.setenv("EMBSTORE_MAX_PIXELS", str(30 * 30))
    r = Store.open(tmp_path / "s").ingest(folder, "pics", encoder=HASH)
    assert (r.added, r.quarantined, r.reasons) == (1, 1, {"image too large": 1})
    monkeypatch.setenv("EMBSTORE_MAX_PIXELS", "0")
    with pytest.raises(InputError, match="EMBSTORE_MAX_PIXELS must be a positive integer, got 0"):
        Store.open(tmp_path / "s2")


def test_search_and_the_cli_refuse_a_bomb_in_one_line(tmp_path, bomb, decoded_sizes):
    folder = tmp_path / "imgs"
    make_png(folder / "ok.png", 0)
    store = Store.open(tmp_path / "s")
    store.ingest(folder, "pics", encoder=HASH)
    with pytest.raises(ImageTooLargeError, match=r"bomb.png has 13000 x 13000 = 169,000,000 pixels, over the limit"):
        store.search("pics", image=bomb)
    out = CliRunner().invoke(cli, ["search", "--store", str(tmp_path / "s"), "-c", "pics", "--image", str(bomb)])
    assert out.exit_code == 2 and "169,000,000 pixels, over the limit of 67,108,864" in out.output
    assert (13_000, 13_000) not in decoded_sizes


# ------------------------------------------------------------------------------------------- rows that are too big
def test_oversized_csv_rows_are_quarantined_and_the_rest_read_on(tmp_path):
    """A field far over the row limit (and over two of pyarrow's blocks, where pyarrow refused the whole file with
    "straddling object"), once quoted over many lines and once as one long line: each row is quarantined with its
    size, every other row is read once, and the counts add up (a 40 MB file: written and read in about a second)."""
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,text\n")
        for i in range(300):
            f.write(f"r{i},short text number {i}\n")
            if i == 100:
                f.write('big1,"' + ("many\nlines " * 3_000_000) + '"\n')  # 33 MB quoted over many lines
            if i == 200:
                f.write("big2," + "x" * 34_000_000 + "\n")  # one 34 MB line
    store = Store.open(tmp_path / "s")
    r = store.ingest(path, "docs", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (302, 300, 2) and counts_add_up(r)
    ids, _ = store.embeddings("docs")
    assert sorted(ids) == sorted(f"r{i}" for i in range(300))
    bad = quarantine_lines(store.root, r.quarantine_file)
    assert len(bad) == 2 and all("row" in b["reason"] and "bytes" in b["reason"] for b in bad), bad


def test_a_header_of_too_many_columns_is_one_line(tmp_path):
    from embstore.ingest.sources import MAX_COLUMNS

    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(MAX_COLUMNS + 1)) + "\n" + ",".join("1" * (MAX_COLUMNS + 1)) + "\n")
    with pytest.raises(InputError, match=f"has {MAX_COLUMNS + 1:,} columns; embstore reads at most {MAX_COLUMNS:,}"):
        Store.open(tmp_path / "s").ingest(path, "docs", encoder=HASH, text_column="c0")


def test_an_oversized_jsonl_line_is_quarantined_with_bounded_memory_and_the_rest_read_on(tmp_path):
    """A 50 MB line among short ones was read whole (then decoded and parsed: memory a few times its size) and
    stored as an item: now it is quarantined with its size and first bytes while the reader holds at most the row
    limit of it, and every other line is read once."""
    import json
    import tracemalloc

    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(300):
            f.write(json.dumps({"id": f"r{i}", "text": f"short text number {i}"}) + "\n")
            if i == 150:
                f.write('{"id": "big", "text": "' + "x" * 50_000_000 + '"}\n')
        f.write('{"id": "last", "text": "no line break after it"}')
    from embstore.ingest.sources import open_source

    list(open_source(write_jsonl(tmp_path / "small.jsonl", [{"text": "a"}])).pieces())  # (imports, before tracing)
    tracemalloc.start()
    try:
        rows = sum(p.table.num_rows + len(p.bad) for p in open_source(path).pieces())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == 302 and peak < 20_000_000, peak  # the row limit and a chunk (the line read whole: over 100 MB)
    store = Store.open(tmp_path / "s")
    r = store.ingest(path, "docs", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (302, 301, 1) and counts_add_up(r)
    ids, _ = store.embeddings("docs")
    assert sorted(ids) == sorted([f"r{i}" for i in range(300)] + ["last"])
    [bad] = quarantine_lines(store.root, r.quarantine_file)
    assert bad["line"] == 152 and bad["reason"].startswith("row too long: 50,000,026 bytes, over the limit of "
                                                           "8,388,608 per row")
    assert bad["data"].startswith('{"id": "big", "text": "xxx') and bad["data"].endswith("...")
    assert len(bad["data"]) <= 1000


def test_an_oversized_utf16_jsonl_line_is_quarantined(tmp_path):
    path = tmp_path / "wide.jsonl"
    lines = ['{"text": "first"}', '{"text": "' + "y" * 5_000_000 + '"}', '{"text": "third"}']
    path.write_bytes("\n".join(lines).encode("utf-16"))
    store = Store.open(tmp_path / "s")
    r = store.ingest(path, "docs", encoder=HASH, encoding="utf-16")
    assert (r.read, r.added, r.quarantined) == (3, 2, 1) and counts_add_up(r)
    [bad] = quarantine_lines(store.root, r.quarantine_file)
    assert bad["line"] == 2 and bad["reason"].startswith("row too long: 10,000,026 bytes")


# ------------------------------------------------------------------------------------------- files that are no files
@pytest.fixture()
def no_hang():
    """Fails the test (instead of hanging it) when a named pipe made through ``no_hang(path)`` is opened for reading
    and waited on: after 30 s a writer opens it and closes it, so the read ends, then the test fails."""
    import signal

    pipes = []

    def make(path):
        os.mkfifo(path)
        pipes.append(path)
        return path

    def ring(*_):
        for p in pipes:
            try:
                os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))  # a reader waiting on it gets its end
            except OSError:
                pass
        raise AssertionError("a named pipe was opened for reading and waited on")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(30)
    yield make
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_a_named_pipe_in_a_folder_of_images_is_quarantined_unread(tmp_path, no_hang):
    folder = tmp_path / "imgs"
    for k in range(2):
        make_png(folder / f"ok{k}.png", k)
    no_hang(folder / "x.png")
    store = Store.open(tmp_path / "s")
    r = store.ingest(folder, "pics", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (3, 2, 1) and counts_add_up(r)
    assert r.reasons == {"not a regular file": 1}
    [bad] = quarantine_lines(store.root, r.quarantine_file)
    assert bad["reason"] == f"not a regular file: {folder / 'x.png'} is a named pipe (FIFO); give image files"
    assert bad["data"]["path"] == str(folder / "x.png")


def test_a_named_pipe_as_a_table_is_one_line(tmp_path, no_hang):
    folder = tmp_path / "tables"
    folder.mkdir()
    (folder / "a.csv").write_text("text\nhello\n")
    no_hang(folder / "b.csv")
    store = Store.open(tmp_path / "s")
    for given in (folder, folder / "b.csv"):
        with pytest.raises(InputError, match=r"b\.csv is not a regular file \(a named pipe \(FIFO\)\); give a CSV"):
            store.ingest(given, "docs", encoder=HASH)


# ------------------------------------------------------------------------------------------- folders that do not list
def unlistable(monkeypatch, *folders):
    """os.scandir refuses ``folders`` (permission denied), as chmod 000 does for a user other than root."""
    real = os.scandir
    refused = {os.fspath(f) for f in folders}

    def scandir(path="."):
        if os.fspath(path) in refused:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_a_subfolder_that_cannot_be_listed_is_quarantined_not_skipped_unsaid(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    for k, sub in enumerate(["a", "a", "locked", "z"]):
        make_png(folder / sub / f"{k}.png", k)
    unlistable(monkeypatch, folder / "locked")
    store = Store.open(tmp_path / "s")
    r = store.ingest(folder, "pics", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (4, 3, 1) and counts_add_up(r)
    assert r.reasons == {"cannot list folder": 1}
    [bad] = quarantine_lines(store.root, r.quarantine_file)
    assert bad["reason"].startswith("cannot list folder: locked: Permission denied; its files were not read")
    assert bad["data"] == "locked" and bad["row"] is None
    with pytest.raises(InputError, match="cannot list folder .*imgs: Permission denied"):
        unlistable(monkeypatch, folder)
        store.ingest(folder, "pics2", encoder=HASH)


def test_a_subfolder_of_tables_that_cannot_be_listed_is_quarantined(tmp_path, monkeypatch):
    folder = tmp_path / "tables"
    (folder / "locked").mkdir(parents=True)
    (folder / "a.csv").write_text("text\nhello\nworld\n")
    unlistable(monkeypatch, folder / "locked")
    store = Store.open(tmp_path / "s")
    r = store.ingest(folder, "docs", encoder=HASH)
    assert (r.read, r.added, r.quarantined, r.reasons) == (3, 2, 1, {"cannot list folder": 1}) and counts_add_up(r)


def _without_dac_capabilities() -> None:
    """(In a child, before exec.) Drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    for cap in (1, 2):
        if prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_a_chmod_000_subfolder_is_quarantined(tmp_path):
    """A real mode-000 folder and a mode-000 file: as root (CI), the ingest runs in a child process without the two
    capabilities that let root list and read them all the same (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, dropped from
    its bounding set before exec, as ``setpriv --bounding-set`` does)."""
    import json
    import subprocess
    import sys

    work = tmp_path
    try:
        folder = work / "imgs"
        make_png(folder / "0.png", 0)
        make_png(folder / "locked" / "1.png", 1)
        make_png(folder / "2.png", 2).chmod(0)
        (folder / "locked").chmod(0)
        code = ("import json, sys; from embstore import Store\n"
                f"r = Store.open({str(work / 's')!r}).ingest({str(folder)!r}, 'pics', encoder={HASH!r})\n"
                "print(json.dumps([r.read, r.added, r.quarantined, r.reasons]))")
        drop = _without_dac_capabilities if os.geteuid() == 0 else None
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                                           os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=work,
                              preexec_fn=drop, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        read, added, quarantined, reasons = json.loads(done.stdout.strip().splitlines()[-1])
        assert (read, added, quarantined) == (3, 1, 2) and read == added + quarantined, reasons
        assert reasons == {"cannot list folder": 1, "unreadable file": 1}, reasons
    finally:
        (work / "imgs" / "locked").chmod(0o755)  # (so that pytest can clear tmp_path)


# ------------------------------------------------------------------------------------------- predict on new images
def test_predict_skips_the_images_it_cannot_use_with_their_reasons_and_predicts_the_rest(tmp_path, monkeypatch,
                                                                                        no_hang):
    """A broken file, a named pipe and a folder that cannot be listed among the images of a predict call: each is
    skipped with its reason (the call failed on the first), the rest predicted; predicted + skipped = given."""
    import json

    for n in range(6):
        make_png(tmp_path / "imgs" / ("a" if n % 2 else "b") / f"{n}.png", n)
    store = Store.open(tmp_path / "s")
    store.ingest(tmp_path / "imgs", "imgs", encoder=HASH)
    store.fit("imgs", "folder", "h", model="knn")
    new = tmp_path / "new"
    make_png(new / "good1.png", 1)
    make_png(new / "sub" / "good2.png", 2)
    (new / "broken.png").write_bytes(b"not an image")
    no_hang(new / "pipe.png")
    make_png(new / "locked" / "3.png", 3)
    unlistable(monkeypatch, new / "locked")
    res = CliRunner().invoke(cli, ["predict", "--store", str(store.root), "--head", "h", "--image", str(new),
                                   "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [r["input"] for r in out["rows"]] == [str(new / "good1.png"), str(new / "sub" / "good2.png")]
    reasons = {s["input"]: s["reason"] for s in out["skipped"]}
    assert reasons == {
        str(new / "locked"): "cannot list folder: locked: Permission denied; its files were not read: fix its "
                             "permissions and ingest the folder again",
        str(new / "broken.png"): f"cannot read image {new / 'broken.png'}: UnidentifiedImageError: cannot identify "
                                 f"image file '{new / 'broken.png'}'",
        str(new / "pipe.png"): f"image {new / 'pipe.png'} is not a regular file (a named pipe (FIFO)); give an "
                               "image file"}
    assert (out["given"], out["predicted"]) == (5, 2) and out["predicted"] + len(out["skipped"]) == out["given"]
    text = CliRunner().invoke(cli, ["predict", "--store", str(store.root), "--head", "h", "--image", str(new)])
    assert text.exit_code == 0 and f"skipped {new / 'broken.png'}: cannot read image" in text.output
    assert "predicted 2 of 5; 3 skipped (reasons above)" in text.output
    # the library, and images given as bytes (named by their place)
    lib = store.predict("h", images=[(new / "good1.png").read_bytes(), b"not an image"])
    assert [r["input"] for r in lib["rows"]] == ["#1"] and lib["skipped"][0]["input"] == "#2"
    assert lib["skipped"][0]["reason"].startswith("cannot read image #2: UnidentifiedImageError")
    # none usable: one line, before a model loads
    bad = CliRunner().invoke(cli, ["predict", "--store", str(store.root), "--head", "h", "--image",
                                   str(new / "broken.png"), "--image", str(new / "pipe.png")])
    assert bad.exit_code == 2 and "none of the 2 images can be read; the first: cannot read image" in bad.output
    with pytest.raises(InputError, match="is not a regular file"):
        store.predict("h", images=[new / "pipe.png"])


# ------------------------------------------------------------------------------------------- ingests that make nothing
def test_an_ingest_that_makes_no_collection_leaves_no_quarantine_folder_and_reports_its_rows(tmp_path):
    """Every row bad: no collection, and no quarantine/<name>/ folder for it (one was left, for a collection that
    does not exist); the rows and reasons are in the report (the CLI lists them, --json has them)."""
    import json

    from conftest import write_csv

    store = Store.open(tmp_path / "s")
    store.ingest(write_csv(tmp_path / "ok.csv", [{"text": "fine"}]), "docs", encoder=HASH)
    bad = write_csv(tmp_path / "bad.csv", [{"text": " "}] * 12 + [{"text": ""}])
    r = store.ingest(bad, "fresh", encoder=HASH)
    assert (r.read, r.added, r.quarantined, r.quarantine_file) == (13, 0, 13, None) and counts_add_up(r)
    assert "fresh" not in Store.open(store.root).manifest["collections"]
    assert not (store.root / "quarantine" / "fresh").exists()
    assert len(r.quarantined_rows) == 13 and r.quarantined_rows[0] == {
        "source": str(bad), "row": 1, "reason": "empty text in column 'text'", "data": {"text": " "}}
    res = CliRunner().invoke(cli, ["ingest", str(bad), "--store", str(store.root), "-c", "fresh", "--encoder", HASH])
    assert res.exit_code == 1 and "not kept in the store (no collection 'fresh' was made); the quarantined rows:" \
        in res.output
    assert f"  {bad} row 1: empty text in column 'text'" in res.output and "... and 3 more" in res.output
    out = CliRunner().invoke(cli, ["ingest", str(bad), "--store", str(store.root), "-c", "fresh", "--encoder", HASH,
                                   "--json"])
    report = json.loads(out.stdout)
    assert report["quarantine_file"] is None and len(report["quarantined_rows"]) == 13
    assert not (store.root / "quarantine").exists()
    # a collection that is kept keeps its quarantine file, and its ingest record has no rows list
    mixed = store.ingest(write_csv(tmp_path / "mixed.csv", [{"text": "a"}, {"text": " "}]), "docs", encoder=HASH)
    assert mixed.quarantine_file is not None and mixed.quarantined_rows == []
    assert "quarantined_rows" not in Store.open(store.root).manifest["collections"]["docs"]["ingests"][-1]


def test_an_ingest_stopped_by_an_error_before_its_first_commit_leaves_no_quarantine_folder(tmp_path, monkeypatch):
    """Rows quarantined, then a CSV column changing type after the first block stops the ingest: no collection was
    committed, so its quarantine records go too (the re-run of the fixed file quarantines them again)."""
    from embstore.ingest import csv_stream

    monkeypatch.setattr(csv_stream, "BLOCK_BYTES", 1024)
    src = tmp_path / "t.csv"
    src.write_text("text,n\n" + "".join(f" ,{i}\n" for i in range(600)) + "a late row,not a number\n")
    store = Store.open(tmp_path / "s")
    with pytest.raises(InputError, match="'n'"):
        store.ingest(src, "c", encoder=HASH)
    assert "c" not in Store.open(store.root).manifest["collections"]
    assert not (store.root / "quarantine").exists()


def test_a_quarantine_folder_of_no_collection_is_found_by_check_and_swept_by_the_next_write(tmp_path):
    """What an ingest killed before its first commit into a new collection, or a delete killed between its commit
    and the removal of the collection's quarantine folder, leaves: check names it, the next writer deletes it; the
    quarantine records of a collection the store has stay."""
    from conftest import write_csv

    from embstore.check import check_store

    store = Store.open(tmp_path / "s")
    kept = store.ingest(write_csv(tmp_path / "a.csv", [{"text": "a"}, {"text": " "}]), "docs", encoder=HASH)
    ghost = store.root / "quarantine" / "ghost"
    ghost.mkdir()
    (ghost / "20260101T000000-deadbeef.jsonl").write_text('{"row": 1, "reason": "empty text"}\n')
    [problem] = check_store(store.root).problems
    assert problem.where == "quarantine/ghost" and "a collection the store does not have" in problem.message
    store.ingest(write_csv(tmp_path / "b.csv", [{"text": "b"}]), "docs", encoder=HASH)
    assert not ghost.exists() and (store.root / kept.quarantine_file).is_file()
    assert check_store(store.root).problems == []
