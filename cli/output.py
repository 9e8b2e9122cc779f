"""Human tables and JSON for the commands."""
from __future__ import annotations

import json
from typing import Any, Sequence

import click


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=1, default=_default, ensure_ascii=False))


def _default(v: Any) -> Any:
    import decimal

    if isinstance(v, decimal.Decimal):  # DuckDB's HUGEINT/DECIMAL (e.g. sum of integers)
        return int(v) if v == v.to_integral_value() else float(v)
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


def fmt(v: Any, width: int = 60) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        s = f"{v:.4f}".replace("-0.0000", "0.0000")  # a tiny negative (a rounding error) is not "-0"
    elif isinstance(v, (list, tuple)) and len(v) > 4:
        s = "[" + ", ".join(fmt(x, 10) for x in v[:3]) + f", ... ({len(v)})]"
    else:
        s = str(v)
    s = s.replace("\n", " ")
    return s if len(s) <= width else s[: width - 1] + "…"


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(s.rstrip() for s in out)


def record_batches(rel: Any, size: int = 10_000) -> Any:
    """Stream a DuckDB relation as Arrow record batches (any DuckDB version)."""
    if hasattr(rel, "to_arrow_reader"):
        return rel.to_arrow_reader(size)
    return rel.fetch_record_batch(size)


def echo_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    click.echo(table(columns, rows))
