"""Shared helpers of the sweep tests: tiny configs and store inspection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from maml_depth.sweep import SweepConfig, parse_config

#: a point that meta-trains in a fraction of a second
TINY: dict[str, Any] = {"d": 3, "width": 4, "n_support": 5, "meta_steps": 5, "meta_batch": 4,
                        "eval_tasks": 20, "condition": 4.0}


def tiny_config(grid: dict[str, list[Any]] | None = None, **fixed: Any) -> SweepConfig:
    data = {"sweep": {"name": "t"}, "fixed": TINY | fixed,
            "grid": grid if grid is not None else {"depth": [1, 2], "seed": [0, 1]}}
    return parse_config(data)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def write_toml(path: Path, fixed: dict[str, Any], grid: dict[str, list[Any]],
               name: str = "t") -> Path:
    lines = ["[sweep]", f'name = "{name}"', "", "[fixed]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in fixed.items()]
    lines += ["", "[grid]"] + [f"{k} = {toml_value(v)}" for k, v in grid.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def record_files(out: Path) -> list[Path]:
    d = Path(out) / "store"
    return sorted(d.glob("*.json")) if d.is_dir() else []


def load_records(out: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in record_files(out)}


def deterministic(rec: dict[str, Any]) -> dict[str, Any]:
    """A record without its timing (and the checksum, which covers the timing)."""
    return {k: v for k, v in rec.items() if k not in ("timing", "checksum")}
