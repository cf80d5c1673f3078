"""MkDocs hook: the tutorials (``examples/tutorial_*.py``) as pages of the site.

A tutorial is a Python script in jupytext's *percent* format: ``# %% [markdown]`` cells of
commented Markdown and ``# %%`` code cells (``jupytext --to notebook`` opens it as a
notebook). At build time each becomes the page ``tutorials/<name>.md`` (``name``: the file
name without ``tutorial_``, ``_`` → ``-``): Markdown cells as text, code cells as Python
blocks. Nothing is executed here — the tests (``tests/examples/test_tutorials.py``) run the
scripts. Links written for the repository (``../docs/theory/x.md`` from ``examples/``) are
rewritten to the site's pages (``../theory/x.md`` from ``tutorials/``), so
``mkdocs build --strict`` checks them, anchors included.

The conversion (:func:`percent_to_markdown`) imports nothing from MkDocs and is tested on
its own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PREFIX = "tutorial_"

_CELL = re.compile(r"^# %%(?P<rest>.*)$")
_DOCS_LINK = re.compile(r"\]\(\.\./docs/")


def page_name(path: Path) -> str:
    """``examples/tutorial_verify_a_claim.py`` → ``tutorials/verify-a-claim.md``."""
    return f"tutorials/{path.stem.removeprefix(PREFIX).replace('_', '-')}.md"


def tutorial_files(folder: Path = EXAMPLES) -> list[Path]:
    """The tutorial scripts, in name order."""
    return sorted(folder.glob(f"{PREFIX}*.py"))


def split_cells(text: str) -> list[tuple[str, str]]:
    """``[(kind, source), ...]`` of a percent-format script, ``kind`` ``"markdown"`` or
    ``"code"``; the jupytext header (a leading ``# ---`` … ``# ---`` block) is dropped and
    Markdown cells are uncommented. Text before the first ``# %%`` is a code cell."""
    lines = text.splitlines()
    if lines and lines[0].strip() == "# ---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "# ---"), None)
        if end is None:
            raise ValueError("the jupytext header (# ---) is not closed")
        lines = lines[end + 1:]
    cells: list[tuple[str, list[str]]] = [("code", [])]
    for line in lines:
        m = _CELL.match(line)
        if m:
            kind = "markdown" if "[markdown]" in m.group("rest") else "code"
            cells.append((kind, []))
            continue
        cells[-1][1].append(line)
    out: list[tuple[str, str]] = []
    for kind, body in cells:
        if kind == "markdown":
            body = [re.sub(r"^# ?", "", ln) if ln.startswith("#") else ln for ln in body]
        source = "\n".join(body).strip("\n")
        if source.strip():
            out.append((kind, source))
    return out


def percent_to_markdown(text: str, *, script: str) -> str:
    """The page of a tutorial: Markdown cells as text, code cells as ``python`` blocks,
    with a line after the title naming the script and how to run it."""
    cells = split_cells(text)
    if not cells or cells[0][0] != "markdown" or not cells[0][1].startswith("# "):
        raise ValueError(f"{script}: the first cell must be Markdown starting with '# <title>'")
    parts: list[str] = []
    for i, (kind, source) in enumerate(cells):
        if kind == "markdown":
            source = _DOCS_LINK.sub("](../", source)
            if i == 0:
                title, _, rest = source.partition("\n")
                source = (f"{title}\n\n*This page is the script `{script}` (jupytext percent "
                          f"format). Run it with `python {script}`; open it as a notebook "
                          f"with `jupytext --to notebook {script}`.*\n{rest}")
            parts.append(source)
        else:
            fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", source)), default=0))
            parts.append(f"{fence}python\n{source}\n{fence}")
    return "\n\n".join(parts) + "\n"


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path in tutorial_files():
        script = path.relative_to(ROOT).as_posix()
        content = percent_to_markdown(path.read_text(encoding="utf-8"), script=script)
        files.append(File.generated(config, page_name(path), content=content))
    return files
