"""A benchmark table: title, column names, rows, notes; rendered as Markdown."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any

from maml_depth.errors import ShapeError


@dataclass
class Table:
    """A Markdown table of benchmark results: a title, column names, rows and notes below it."""
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *row: Any) -> None:
        """Append one row; raises :class:`ShapeError` unless it has one cell per column."""
        if len(row) != len(self.columns):
            raise ShapeError(
                f"row has {len(row)} cells, table {self.title!r} has {len(self.columns)} "
                f"columns {self.columns}"
            )
        self.rows.append(list(row))

    def markdown(self) -> str:
        """The table as Markdown: a ``###`` title, the rows (floats to 3 significant digits, NaN
        as "n/a") and the notes as a bullet list."""
        def cell(v: Any) -> str:
            if isinstance(v, float):
                if v != v:
                    return "n/a"
                return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"
            return str(v)

        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def machine_description() -> str:
    """One line naming the CPU, core count, Python and torch build."""
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}; {os.cpu_count()} logical CPUs; torch threads {torch.get_num_threads()}; "
        f"Python {platform.python_version()}; torch {torch.__version__}; {gpu}"
    )


def render(tables: list[Table]) -> str:
    """The tables as one Markdown document, in order."""
    return "\n".join(t.markdown() for t in tables)
