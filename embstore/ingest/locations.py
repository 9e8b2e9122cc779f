"""Where a source's data lies: a spec (a local file or folder, a glob, an fsspec URL, or a list of those) resolved to
the files to read, without reading any of them.

- A local path or a ``file://`` URL is read from the local disk; any other URL through fsspec
  (``fsspec.core.url_to_fs``). A protocol whose package is missing is a one-line error naming the package.
- A glob (``data/*.parquet``, ``data/**/*.jsonl``; ``**`` also matches no folder) names files: sorted, folders it
  matches left out, names starting with '.' or '_' below its fixed part skipped. One that matches nothing is an error.
- A folder is walked in ``os.walk`` order (a folder's files sorted, then its subfolders sorted; hidden ones skipped)
  until its first image: a folder holding an image is a folder of images, walked on lazily by the source as it
  streams; a folder holding none is a folder of tables, listed whole and sorted (names starting with '_', such as
  ``_SUCCESS``, ``_common_metadata`` or a ``_delta_log`` folder, are skipped as Spark and Hive leave them; other files
  are counted as ignored). A subfolder that cannot be listed is a bad row of the source (quarantined with its
  reason, so the ingest counts and names it), never skipped unsaid.
- A list resolves each item; the same file twice is read once, the first time; the list's order is kept.
- All tables of one source are of one kind (CSV, TSV, Parquet or JSONL): two kinds is an error naming a file of each.
"""
from __future__ import annotations

import glob as globbing
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator, Sequence

from ..errors import InputError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
TABLE_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
                    ".ndjson": "jsonl", ".json": "jsonl"}
MAGIC = re.compile(r"[*?[]")


@dataclass(frozen=True)
class Loc:
    """A file or folder: an absolute local path (``fs`` None), or a path on an fsspec filesystem."""

    path: str
    fs: Any = None
    shown: str = ""  # how messages name it: relative to the folder or glob it was found in, else its file name

    @property
    def url(self) -> str:
        """The absolute local path, or the URL fsspec opens it by."""
        return self.path if self.fs is None else self.fs.unstrip_protocol(self.path)

    @property
    def ext(self) -> str:
        return posixpath.splitext(self.path)[1].lower()

    @property
    def folder_name(self) -> str:
        """The name of the folder holding this file."""
        return posixpath.basename(posixpath.dirname(self.path))

    def below(self, path: str) -> "Loc":
        """A file under this folder, named in messages by its path relative to it."""
        if self.fs is None:
            shown = os.path.relpath(path, self.path).replace(os.sep, "/")
        else:
            shown = path[len(self.path):].lstrip("/") if path.startswith(self.path) else posixpath.basename(path)
        return Loc(path, self.fs, shown)

    def parent_url(self) -> str:
        parent = Loc(posixpath.dirname(self.path) or self.path, self.fs)
        return parent.url

    def open(self) -> BinaryIO:
        return open(self.path, "rb") if self.fs is None else self.fs.open(self.path, "rb")

    def arrow_input(self) -> Any:
        """What pyarrow's readers take: the path itself when local (pyarrow's own I/O), else an open file."""
        return self.path if self.fs is None else self.open()

    def size(self) -> int:
        return os.path.getsize(self.path) if self.fs is None else int(self.fs.size(self.path))

    def exists(self) -> bool:
        return os.path.exists(self.path) if self.fs is None else bool(self.fs.exists(self.path))

    def isdir(self) -> bool:
        return os.path.isdir(self.path) if self.fs is None else bool(self.fs.isdir(self.path))

    def key(self) -> tuple[str, str]:
        """Equal for the same file reached twice (through '..', a symlink, a second glob)."""
        if self.fs is None:
            return "", os.path.realpath(self.path)
        return type(self.fs).__name__, self.url


@dataclass
class Found:
    """What a spec names, before anything is read."""

    name: str  # recorded as the ingest's source
    base_dir: str  # where relative image paths of a table resolve
    tables: list["TableFile"] = field(default_factory=list)
    first_image: Loc | None = None  # a folder of images: its first image, and the rest of the walk
    walk: Iterator[Loc] | None = None
    root: Loc | None = None  # the folder of images, or the spec's own location
    ignored: int = 0  # files that are neither images nor tables of the source, met so far
    unlisted: list[dict[str, Any]] = field(default_factory=list)  # folders the walk could not list, met so far

    @property
    def kind(self) -> str:
        return "folder" if self.first_image is not None else self.tables[0].kind


@dataclass(frozen=True)
class TableFile:
    loc: Loc
    kind: str  # csv | tsv | parquet | jsonl
    root: Loc | None = None  # the folder or glob root it was found under: Hive partition folders count below it


def resolve(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> Found:
    """Resolve a spec to the files it names; raises InputError (one line) for what cannot be read as given."""
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not items:
        raise InputError("no input given; give a file, a folder, a glob or a URL")
    parts = [_resolve_one(item) for item in items]
    if len(parts) == 1:
        return parts[0]
    for part in parts:
        if part.first_image is not None:
            raise InputError(f"{part.name} is a folder of images: give it alone, not in a list with other inputs")
    tables, seen = [], set()
    for part in parts:
        for table in part.tables:
            if table.loc.key() not in seen:
                seen.add(table.loc.key())
                tables.append(table)
    check_one_kind(tables)
    return Found(", ".join(p.name for p in parts), parts[0].base_dir, tables, ignored=sum(p.ignored for p in parts),
                 unlisted=[u for p in parts for u in p.unlisted])


def check_one_kind(tables: Sequence[TableFile]) -> None:
    other = next((t for t in tables if t.kind != tables[0].kind), None)
    if other is not None:
        first = tables[0]
        raise InputError(f"{first.loc.url} is {first.kind.upper()} but {other.loc.url} is {other.kind.upper()}; "
                         "give tables of one kind per ingest")


def special_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` is when it is no regular file ('a named pipe (FIFO)', ...), else None. Reading a
    named pipe waits for a writer, and a device may never end: such files are refused before they are read."""
    import stat

    if stat.S_ISREG(mode):
        return None
    for test, kind in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "not a regular file"


def check_regular(loc: Loc, shown: str) -> None:
    """A local table file that is no regular file (a named pipe, a device) is a one-line error, never opened."""
    kind = special_kind(os.stat(loc.path).st_mode) if loc.fs is None else None
    if kind is not None:
        raise InputError(f"{shown} is not a regular file ({kind}); give a CSV, TSV, Parquet or JSONL file")


def table_kind(loc: Loc) -> str:
    kind = TABLE_EXTENSIONS.get(loc.ext)
    if kind is not None:
        return kind
    name = posixpath.basename(loc.path)
    if loc.ext in IMAGE_EXTENSIONS:
        raise InputError(f"{name} is an image; give the folder that holds the images, or a table listing their paths")
    suffix = posixpath.splitext(loc.path)[1]
    raise InputError(f"{name}: unknown file type {suffix!r}; use .csv, .tsv, .parquet, .jsonl or a folder of images")


def url_to_fs(url: str) -> tuple[Any, str]:
    """fsspec's filesystem and path for a URL, with a missing package or an unknown protocol as one line."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        raise InputError(missing_package(url, e)) from None
    except ValueError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if first.startswith("Protocol not known"):
            protocol = first.rsplit(":", 1)[-1].strip()
            raise InputError(f"{url}: unknown protocol {protocol}://; give a local path or a URL of a filesystem "
                             "fsspec knows (file://, memory://, s3://, gs://, hf://, ...)") from None
        raise InputError(f"cannot open {url}: {first}") from None


def missing_package(url: str, error: ImportError) -> str:
    """'reading s3:// needs the s3fs package: pip install s3fs', from fsspec's registry of known implementations."""
    import fsspec
    from fsspec.registry import known_implementations

    for part in url.split("::"):
        protocol = part.split("://", 1)[0] if "://" in part else part
        entry = known_implementations.get(protocol)
        if entry is None:
            continue
        try:
            fsspec.get_filesystem_class(protocol)
            continue
        except ImportError:
            pass
        err = entry.get("err", "")
        named = re.search(r"\binstall ([A-Za-z0-9_.\-]+)", err, re.IGNORECASE)
        packages = [named.group(1)] if named else re.findall(r'"([A-Za-z0-9_.\-]+)"', err)
        packages = packages or [entry["class"].split(".")[0]]
        noun = "package" if len(packages) == 1 else "packages"
        return f"reading {protocol}:// needs the {' and '.join(packages)} {noun}: pip install {' '.join(packages)}"
    return f"reading {url} needs a package that is not installed: {str(error).splitlines()[0]}"


def _resolve_one(item: str | os.PathLike) -> Found:
    text = os.fspath(item)
    if "://" in text or "::" in text:
        fs, path = url_to_fs(text)
        from fsspec.implementations.local import LocalFileSystem

        if isinstance(fs, LocalFileSystem):
            root = Loc(os.path.abspath(path))
            name = root.path
        else:
            root = Loc(path.rstrip("/") or path, fs)
            name = text
    else:
        root = Loc(os.path.abspath(os.path.expanduser(text)))
        name = root.path
    if MAGIC.search(root.path) and not root.exists():
        return _glob(root, name)
    if not root.exists():
        raise InputError(f"{name} does not exist; give a CSV, Parquet or JSONL file, or a folder of images")
    if root.isdir():
        return _folder(root, name)
    loc = Loc(root.path, root.fs, posixpath.basename(root.path))
    kind = table_kind(loc)
    check_regular(loc, name)
    return Found(name, loc.parent_url(), [TableFile(loc, kind)], root=loc)


def _glob(pattern: Loc, name: str) -> Found:
    fixed = []
    for part in pattern.path.split("/"):
        if MAGIC.search(part):
            break
        fixed.append(part)
    base = Loc("/".join(fixed) or "/", pattern.fs)
    if pattern.fs is None:
        matches = [p for p in globbing.glob(pattern.path, recursive=True) if os.path.isfile(p)]
    else:
        matches = [p for p, info in pattern.fs.glob(pattern.path, detail=True).items() if info.get("type") == "file"]
    locs = [base.below(p) for p in sorted(set(matches))]
    locs = [loc for loc in locs if not any(part[:1] in (".", "_") for part in loc.shown.split("/"))]
    if not locs:
        raise InputError(f"no file matches {name}; check the folder and the pattern")
    tables = [TableFile(loc, table_kind(loc), base) for loc in locs]
    check_one_kind(tables)
    return Found(name, base.url, tables, root=base)


def walk_files(root: Loc, unlisted: list[dict[str, Any]] | None = None) -> Iterator[Loc]:
    """The files below a folder in os.walk's order: a folder's files sorted, then each subfolder's, sorted; hidden
    files and folders skipped. Lazy: a folder is listed when the walk reaches it. A subfolder that cannot be listed
    (no permission, gone meanwhile) is appended to ``unlisted`` as a bad row (``unlisted_folder``) and the walk goes
    on; the folder itself not listing is a one-line error."""
    unlisted = [] if unlisted is None else unlisted

    def failed(path: str, error: OSError) -> None:
        if path.rstrip("/") == root.path.rstrip("/"):
            raise InputError(f"cannot list folder {root.url}: {error.strerror or error}; check its permissions")
        unlisted.append(unlisted_folder(root.below(path).shown, error))

    if root.fs is None:
        for dirpath, dirnames, filenames in os.walk(root.path, onerror=lambda e: failed(e.filename, e)):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith("."):
                    yield root.below(os.path.join(dirpath, name))
        return
    stack = [root.path]
    while stack:
        folder = stack.pop()
        files, folders = [], []
        try:
            listing = root.fs.ls(folder, detail=True)
        except OSError as e:
            failed(folder, e)
            continue
        for info in listing:
            path = info["name"].rstrip("/")
            if path == folder.rstrip("/") or posixpath.basename(path).startswith("."):
                continue
            (folders if info.get("type") == "directory" else files).append(path)
        for path in sorted(files):
            yield root.below(path)
        stack.extend(sorted(folders, reverse=True))


def unlisted_folder(shown: str, error: OSError) -> dict[str, Any]:
    """The bad row of a folder that could not be listed: quarantined with its reason, as a file that cannot be read
    is, so that an ingest says that its files were not read."""
    return {"row": None, "reason": f"cannot list folder: {shown}: {error.strerror or error}; its files were not read: "
            "fix its permissions and ingest the folder again", "data": shown}


def _folder(root: Loc, name: str) -> Found:
    unlisted: list[dict[str, Any]] = []
    walk = walk_files(root, unlisted)
    before: list[Loc] = []  # files met before the first image
    for loc in walk:
        if loc.ext in IMAGE_EXTENSIONS:
            return Found(name, root.url, first_image=loc, walk=walk, root=root, ignored=len(before),
                         unlisted=unlisted)
        before.append(loc)
    kept = [loc for loc in before if not any(part.startswith("_") for part in loc.shown.split("/"))]
    tables = [TableFile(loc, TABLE_EXTENSIONS[loc.ext], root) for loc in kept if loc.ext in TABLE_EXTENSIONS]
    if not tables:
        raise InputError(f"folder {name} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) and no tables "
                         "(.csv, .tsv, .parquet, .jsonl)")
    tables.sort(key=lambda t: t.loc.path)
    for t in tables:
        check_regular(t.loc, t.loc.url)
    check_one_kind(tables)
    return Found(name, root.url, tables, root=root, ignored=len(kept) - len(tables), unlisted=unlisted)
