"""MkDocs hooks of the documentation site (``mkdocs.yml`` → ``hooks:``).

What they do at build time:

- **KaTeX offline.** The KaTeX distribution that ``make docs`` unpacked from the npm registry
  into ``build/docs/katex`` is added to the site under ``assets/katex/``; the pages load it
  from there (nothing is fetched from a CDN when a page is viewed).
- **The claims page** (``claims.md``) is generated from the claims registry
  (:data:`maml_depth.validation.CLAIMS`: id, title, statement, reference) and the committed
  quick-budget snapshot ``docs/_data/claims-quick.json`` (or "not run").
- **The figure gallery** (``gallery.md``) is ``paper_figures/README.md`` with its images.
- **Links to files of the repository outside ``docs/``** (e.g. ``../../tests/theory/x.py``,
  right when the Markdown is read in the repository) point on the site to a generated page
  that shows the file. A link to a file that does not exist is a warning, so
  ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import get_plugin_logger
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = get_plugin_logger("maml_depth_docs")

ROOT = Path(__file__).resolve().parents[2]
KATEX_DIR = ROOT / "build" / "docs" / "katex"
SNAPSHOT = ROOT / "docs" / "_data" / "claims-quick.json"
GALLERY_README = ROOT / "paper_figures" / "README.md"
SOURCE_PREFIX = "source"

# The sections of the former specification and the pages of the theory document that replace
# them (claims whose reference still cites one are linked to its replacement).
SECTION_PAGES: dict[str, str] = {
    "1": "theory/update-rules.md#one-step",
    "2": "theory/notation.md#task-family",
    "3": "theory/expected-loss.md#closed-form",
    "4": "theory/expected-loss.md#optimal-preconditioner",
    "5": "theory/paper-claims.md",
    "5.1": "theory/paper-claims.md#claim-1",
    "5.2": "theory/paper-claims.md#claim-2",
    "5.3": "theory/paper-claims.md#claim-3",
    "5.4": "theory/paper-claims.md#claim-4",
    "5.5": "theory/paper-claims.md#claim-5",
    "5.6": "theory/paper-claims.md#claim-6",
    "6": "theory/update-rules.md#factorized",
}

_LINK = re.compile(r"(\]\()([^)\s#]+)(#[^)\s]*)?(\))")


# ---------------------------------------------------------------------------------------------
# configuration


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Pages added to ``docs/theory/`` join the Theory section of the navigation by
    themselves (after the listed ones, by name), so a new page never breaks the build."""
    for entry in config.nav or []:
        if isinstance(entry, dict) and isinstance(entry.get("Theory"), list):
            section = entry["Theory"]
            listed = {v for item in section
                      for v in (item.values() if isinstance(item, dict) else [item])}
            for path in sorted((ROOT / "docs" / "theory").glob("*.md")):
                rel = f"theory/{path.name}"
                if rel not in listed:
                    section.append(rel)
    return config


# ---------------------------------------------------------------------------------------------
# files


def on_files(files: Files, config: MkDocsConfig) -> Files:
    _add_katex(files, config)
    files.append(File.generated(config, "claims.md", content=_claims_markdown(files)))
    _add_gallery(files, config)
    _add_source_pages(files, config)
    return files


def _add_katex(files: Files, config: MkDocsConfig) -> None:
    if not (KATEX_DIR / "katex.min.js").is_file():
        raise PluginError(
            f"KaTeX is missing from {KATEX_DIR}: build the site with `make docs`, which "
            "unpacks it from the npm registry (`npm pack katex`), not with a bare `mkdocs build`"
        )
    for path in sorted(KATEX_DIR.rglob("*")):
        if path.is_file() and path.suffix in {".js", ".css", ".woff2", ".woff", ".ttf"}:
            rel = path.relative_to(KATEX_DIR).as_posix()
            files.append(File.generated(config, f"assets/katex/{rel}", abs_src_path=str(path)))


def _add_gallery(files: Files, config: MkDocsConfig) -> None:
    text = GALLERY_README.read_text(encoding="utf-8")
    gallery_dir = GALLERY_README.parent / "gallery"
    for path in sorted(gallery_dir.glob("*")):
        if path.suffix.lower() in {".png", ".pdf", ".svg"}:
            files.append(File.generated(config, f"gallery/{path.name}", abs_src_path=str(path)))
    note = ("\n\n---\n*This page is `paper_figures/README.md`, written by `make figures` "
            "(`maml-depth figures`).*\n")
    files.append(File.generated(config, "gallery.md", content=text + note))


def _repo_target(page_src_uri: str, target: str) -> str | None:
    """The repository path a relative link of a page in docs/ points to, when it leaves docs/."""
    if "://" in target or target.startswith(("/", "mailto:")):
        return None
    joined = os.path.normpath(os.path.join("docs", os.path.dirname(page_src_uri), target))
    if joined.startswith("..") or joined == "docs" or joined.startswith("docs" + os.sep):
        return None
    return PurePosixPath(*Path(joined).parts).as_posix()


def _add_source_pages(files: Files, config: MkDocsConfig) -> None:
    wanted: set[str] = set()
    for f in list(files.documentation_pages()):
        if f.generated_by or f.abs_src_path is None:
            continue
        text = Path(f.abs_src_path).read_text(encoding="utf-8")
        for m in _LINK.finditer(text):
            rel = _repo_target(f.src_uri, m.group(2))
            if rel is not None and (ROOT / rel).is_file():
                wanted.add(rel)
    for rel in sorted(wanted):
        content = (ROOT / rel).read_text(encoding="utf-8")
        fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", content)), default=0))
        lang = {".py": "python", ".md": "markdown", ".toml": "toml", ".sh": "bash"}.get(
            Path(rel).suffix, "text")
        page = (f"# `{rel}`\n\nThe file `{rel}` of the repository, as it was when this site "
                f"was built.\n\n{fence}{lang}\n{content}\n{fence}\n")
        files.append(File.generated(config, f"{SOURCE_PREFIX}/{rel}.md", content=page))


# ---------------------------------------------------------------------------------------------
# pages


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    src_uri = page.file.src_uri
    if page.file.generated_by and not src_uri.startswith(("claims", "gallery")):
        return markdown

    def fix(m: re.Match[str]) -> str:
        rel = _repo_target(src_uri, m.group(2))
        if rel is None:
            return m.group(0)
        if not (ROOT / rel).is_file():
            log.warning("%s links to %s, which is not a file of the repository", src_uri, rel)
            return m.group(0)
        source = f"{SOURCE_PREFIX}/{rel}.md"
        up = "../" * src_uri.count("/")
        return f"{m.group(1)}{up}{source}{m.group(4)}"

    return _LINK.sub(fix, markdown)


# ---------------------------------------------------------------------------------------------
# the claims page


def _reference_markdown(reference: str, files: Files) -> str:
    """The reference text with its pointers into the theory document made links."""

    def link(page_anchor: str, text: str) -> str:
        page = page_anchor.split("#", 1)[0]
        return f"[{text}]({page_anchor})" if files.get_file_from_path(page) else text

    def old(m: re.Match[str]) -> str:
        sections: list[str] = []
        for first, last in re.findall(r"§\s*([0-9]+(?:\.[0-9]+)?)(?:\s*[–-]\s*([0-9]+))?",
                                      m.group(0)):
            sections.append(first)
            if last and "." not in first:  # a range such as §2–3
                sections += [str(i) for i in range(int(first) + 1, int(last) + 1)]
        out = []
        for s in sections:
            target = SECTION_PAGES.get(s)
            out.append(link(target, f"§{s}") if target else f"§{s}")
        trailing = m.group(0)[len(m.group(0).rstrip()):]
        return "theory " + ", ".join(out) + trailing

    text = re.sub(r"MATH\.md\s*(?:§\s*[0-9]+(?:\.[0-9]+)?(?:\s*[–-]\s*[0-9]+)?[,\s]*)+", old,
                  reference)
    text = re.sub(r"docs/(theory/[\w.-]+\.md)(#[\w.-]+)?",
                  lambda m: link(m.group(1) + (m.group(2) or ""), m.group(0)), text)
    return text


def _esc(text: str) -> str:
    """Registry text as literal Markdown (``P*`` and ``B_L`` are not emphasis)."""
    return re.sub(r"([\\*_|\[\]])", r"\\\1", text).replace("<", "&lt;")


def _result_markdown(res: dict[str, Any] | None, snapshot: dict[str, Any],
                     budgets: tuple[str, ...]) -> str:
    if res is None:
        budget = snapshot.get("run", {}).get("budget")
        if budget and budget not in budgets:
            return (f"**not run** (the snapshot's budget is `{budget}`; this claim runs with "
                    f"{' or '.join(f'`{b}`' for b in budgets)})")
        return "**not run** (no result in the committed snapshot)"
    from maml_depth.validation.report import format_value

    parts = [f"**{res['verdict']}**"]
    if res.get("measured") is not None or res.get("theory") is not None:
        parts.append(f"measured {format_value(res.get('measured'))}, "
                     f"theory {format_value(res.get('theory'))}")
    if res.get("ci"):
        lo, hi = res["ci"]
        level = res.get("ci_level")
        lev = f"{100 * level:.0f}% " if isinstance(level, float) else ""
        n = f", n = {res['n']}" if res.get("n") is not None else ""
        parts.append(f"{lev}CI [{format_value(lo)}, {format_value(hi)}]{n}")
    if res.get("effect"):
        parts.append(f"({_esc(res['effect'])})")
    line = "; ".join(parts)
    if res.get("summary"):
        line += f"  \n{_esc(res['summary'])}"
    return line


def _claims_markdown(files: Files) -> str:
    from maml_depth.validation import CLAIMS, SUITES

    snapshot: dict[str, Any] = {}
    if SNAPSHOT.is_file():
        snapshot = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    results = {r["id"]: r for r in snapshot.get("claims", [])}
    lines = [
        "# Claims",
        "",
        "Generated from the claims registry (`maml_depth.validation.CLAIMS`) when the site was "
        "built. Each claim is a check that `maml-depth validate` runs; how each is decided is "
        "in [the paper's claims](theory/paper-claims.md).",
        "",
    ]
    if snapshot:
        meta = snapshot.get("run", {})
        lines += [
            "The results are those of a committed snapshot "
            f"(`docs/_data/claims-quick.json`): `{meta.get('command', '?')}`, "
            f"budget `{meta.get('budget', '?')}`, seed {meta.get('seed', '?')}, "
            f"device {meta.get('device', '?')}, maml_depth {meta.get('maml_depth', '?')}, "
            f"torch {meta.get('torch', '?')}, recorded {meta.get('date', '?')}. "
            "A claim registered since then shows **not run**. Run it yourself with "
            "`make validate` (report in `results/validate/report.md`).",
            "",
        ]
    else:
        lines += ["No snapshot is committed: every result shows **not run**.", ""]
    lines += ["| id | claim | suite | result |", "|---|---|---|---|"]
    ordered = sorted(CLAIMS.values(), key=lambda c: (SUITES.index(c.suite)
                                                      if c.suite in SUITES else 99,
                                                      c.number if c.number is not None else 999,
                                                      c.id))
    for c in ordered:
        res = results.get(c.id)
        verdict = res["verdict"] if res else "not run"
        budget = snapshot.get("run", {}).get("budget")
        if res is None and budget and budget not in c.budgets:
            verdict = f"not run (budget {' or '.join(c.budgets)} only)"
        lines.append(f"| [`{c.id}`](#{c.id}) | {_esc(c.title)} | {c.suite} | {verdict} |")
    lines.append("")
    for c in ordered:
        num = f"{c.number}. " if c.number is not None else ""
        lines += [
            f"## {num}{_esc(c.title)} {{#{c.id}}}",
            "",
            f"- **id:** `{c.id}` (suite `{c.suite}`; budgets: "
            f"{', '.join(f'`{b}`' for b in c.budgets)})",
            f"- **statement:** {_reference_markdown(_esc(c.statement), files)}",
            f"- **reference:** {_reference_markdown(_esc(c.reference), files)}",
            f"- **result:** {_result_markdown(results.get(c.id), snapshot, c.budgets)}",
            "",
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the built pages

_UNRESOLVED = re.compile(r"\]\[(maml_depth\.[\w.]+)\]")


def on_post_page(output: str, page: Page, config: MkDocsConfig) -> str:
    """A cross-reference that mkdocstrings could not resolve is left as literal text:
    report it, so that ``--strict`` fails on an unknown reference."""
    for ident in sorted(set(_UNRESOLVED.findall(output))):
        log.warning("%s: unresolved cross-reference to %s", page.file.src_uri, ident)
    # "Source code in ...": the repository's paths, not those of the installed-layout tree
    for sub in ("theory", "numerics", "validation", "paper_figures"):
        output = output.replace(f"build/docs/src/maml_depth/{sub}/", f"{sub}/")
    return output.replace("build/docs/src/maml_depth/", "maml_depth/")
