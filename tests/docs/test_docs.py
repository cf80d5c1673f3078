"""The documentation site: math markup in the built theory pages, math rendered in a browser,
the generated claims page, and the runnable example of the getting-started page.

- The fast tests read ``build/site`` (skipped, with the reason, when ``make docs`` has not
  been run) and the Markdown sources.
- The slow test builds the site with ``make docs`` and opens every theory page in headless
  Chromium (Debian's package: ``apt-get update && apt-get install -y chromium``; skipped with
  the reason when ``/usr/bin/chromium`` is missing), then fails if raw TeX is visible in the
  rendered text or KaTeX reported an error.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import types
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SITE = ROOT / "build" / "site"
CHROMIUM = Path("/usr/bin/chromium")
THEORY_PAGES = sorted(p.stem for p in (DOCS / "theory").glob("*.md") if p.stem != "index")

# TeX that must never be visible to a reader once the math is rendered.
RAW_TEX = (r"\frac", "$$", r"\Sigma", r"\Lambda", r"\operatorname", r"\mathbb", r"\tag",
           r"\(", r"\)", r"\[", r"\]", r"\begin", r"\alpha", r"\top")


def _built(page: str) -> Path:
    path = SITE / "theory" / page / "index.html"
    if not path.is_file():
        pytest.skip(f"the site is not built ({path.relative_to(ROOT)} is missing): run `make docs`")
    return path


# ---------------------------------------------------------------------------------------------
# fast: the built HTML


@pytest.mark.parametrize("page", THEORY_PAGES)
def test_built_theory_page_carries_math_markup_and_local_katex(page):
    html = _built(page).read_text(encoding="utf-8")
    source = (DOCS / "theory" / f"{page}.md").read_text(encoding="utf-8")
    n_display = len(re.findall(r"^\$\$\s*$", source, flags=re.M)) // 2
    # arithmatex (generic mode) wraps every formula for KaTeX: display math in a div with \[ \]
    assert html.count('<div class="arithmatex">') == n_display
    assert '<span class="arithmatex">' in html, f"{page} has no inline math markup"
    # every displayed equation is numbered, each number once, and each is in the page once
    tags = re.findall(r"\\tag\{([^}]*)\}", source)
    assert len(tags) == n_display, f"{page}.md: {n_display} displayed equations, {len(tags)} tags"
    assert len(tags) == len(set(tags)), f"{page}.md: equation numbers not unique"
    for t in tags:
        assert html.count(f"\\tag{{{t}}}") == 1, f"{page}: equation ({t}) missing or repeated"
        assert f'id="eq-{t}"' in html, f"{page}: equation ({t}) has no anchor #eq-{t}"
    # KaTeX comes from the site itself, never from a CDN
    for asset in ("assets/katex/katex.min.js", "assets/katex/contrib/auto-render.min.js",
                  "assets/katex/katex.min.css", "javascripts/katex-init.js"):
        assert asset in html, f"{page} does not load {asset}"
        assert (SITE / asset).is_file(), f"{asset} is not in the built site"
    assert not re.search(r"<(?:script|link)[^>]+(?:src|href)=\"(?:https?:)?//", html), (
        f"{page} loads something from outside the site")


def test_built_claims_page_lists_every_registered_claim():
    path = SITE / "claims" / "index.html"
    if not path.is_file():
        pytest.skip("the site is not built (build/site/claims/index.html is missing): "
                    "run `make docs`")
    from maml_depth.validation import CLAIMS

    html = path.read_text(encoding="utf-8")
    for cid in CLAIMS:
        assert f'id="{cid}"' in html, f"claim {cid} is not on the claims page"


# ---------------------------------------------------------------------------------------------
# fast: sources


def _hooks() -> types.ModuleType:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: run `make docs`")
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "_tooling" / "hooks.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Files:
    """The part of mkdocs' Files the claims page uses: which pages exist."""

    def get_file_from_path(self, path: str) -> object | None:
        return path if (DOCS / path).is_file() else None


def test_claims_page_shows_the_snapshot_and_not_run(monkeypatch, tmp_path):
    hooks = _hooks()
    from maml_depth.validation import CLAIMS

    ids = sorted(CLAIMS)
    snap = {"run": {"budget": "quick", "command": "maml-depth validate --budget quick"},
            "claims": [{"id": ids[0], "verdict": "fail", "measured": 1.5, "theory": 2.0,
                        "ci": [1.25, 1.75], "ci_level": 0.95, "n": 7, "effect": "e",
                        "summary": "a summary with P* and B_L"}]}
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(snap))
    monkeypatch.setattr(hooks, "SNAPSHOT", path)
    md = hooks._claims_markdown(_Files())
    for cid in ids:
        assert f"{{#{cid}}}" in md
    assert "**fail**; measured 1.5, theory 2; 95% CI [1.25, 1.75], n = 7" in md
    assert r"P\* and B\_L" in md  # registry text is literal, not emphasis
    others = [c for c in ids[1:] if "quick" in CLAIMS[c].budgets]
    assert others and md.count("**not run** (no result in the committed snapshot)") == len(
        others)


def test_committed_snapshot_names_registered_claims():
    snap = json.loads((DOCS / "_data" / "claims-quick.json").read_text(encoding="utf-8"))
    from maml_depth.validation import CLAIMS
    from maml_depth.validation.claims import VERDICTS

    assert snap["claims"], "empty snapshot"
    for c in snap["claims"]:
        assert c["id"] in CLAIMS and c["verdict"] in VERDICTS


def test_section_map_points_at_defined_anchors():
    hooks = _hooks()
    for section, target in hooks.SECTION_PAGES.items():
        page, _, anchor = target.partition("#")
        text = (DOCS / page).read_text(encoding="utf-8")
        if anchor:
            assert f"{{#{anchor}}}" in text, f"§{section} → {target}: anchor not defined"


@pytest.mark.parametrize("page", THEORY_PAGES)
def test_tests_named_on_a_theory_page_exist_in_the_files_it_links(page):
    text = (DOCS / "theory" / f"{page}.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(\.\./\.\./(tests/[\w/]+\.py)\)", text))
    defined: set[str] = set()
    for rel in linked:
        assert (ROOT / rel).is_file(), f"{page}.md links to {rel}, which does not exist"
        defined |= set(re.findall(r"^def (test_\w+)", (ROOT / rel).read_text(), flags=re.M))
    named = set(re.findall(r"`(test_\w+)`", text))
    assert named <= defined, f"{page}.md names tests not in the files it links: {named - defined}"


def test_equation_links_name_the_equation_they_point_at():
    pages = [*sorted((DOCS / "theory").glob("*.md")), DOCS / "getting-started.md"]
    n = 0
    for path in pages:
        text = path.read_text(encoding="utf-8")
        for label, anchor in re.findall(r"\[[^\]]*?\(([0-9]+\.[0-9]+)\)\]\([\w./-]*#eq-([^)]+)\)",
                                        text):
            n += 1
            assert label == anchor, f"{path.name}: a link says ({label}) but points at #eq-{anchor}"
    assert n > 0


def test_getting_started_example_runs(capsys):
    text = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    exec(compile(blocks[0], "getting-started.md", "exec"), {})
    star, _, shallow = capsys.readouterr().out.split()
    assert float(star) <= float(shallow)


# ---------------------------------------------------------------------------------------------
# slow: build, then look at the pages as a reader would


class _VisibleText(HTMLParser):
    """Text a reader sees: no scripts, styles, or KaTeX's hidden MathML copy of the TeX."""

    HIDDEN = frozenset({"script", "style", "annotation", "noscript", "template"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"br", "img", "hr", "meta", "link", "input", "wbr", "source"}:
            return
        classes = (dict(attrs).get("class") or "").split()
        hidden = tag in self.HIDDEN or "katex-mathml" in classes
        self.stack.append(hidden or (bool(self.stack) and self.stack[-1]))

    def handle_endtag(self, tag: str) -> None:
        if self.stack and tag not in {"br", "img", "hr", "meta", "link", "input", "wbr"}:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1]):
            self.parts.append(data)


def _dump_dom(url: str) -> str:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--virtual-time-budget=10000", "--dump-dom", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout


@pytest.mark.slow
def test_theory_pages_render_without_raw_tex_in_chromium():
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is missing (/usr/bin/chromium): "
                    "`apt-get update && apt-get install -y chromium`")
    if not (ROOT / "build" / "docs" / "katex" / "katex.min.js").is_file() and not shutil.which(
            "npm"):
        pytest.skip("`make docs` needs npm to fetch KaTeX: `apt-get install -y npm`")
    subprocess.run(["make", "docs"], cwd=ROOT, check=True, capture_output=True, timeout=900)
    for page in THEORY_PAGES:
        path = SITE / "theory" / page / "index.html"
        dom = _dump_dom(path.as_uri())
        assert "katex-error" not in dom, f"{page}: KaTeX could not parse a formula"
        n_math = len(re.findall(r'class="arithmatex"', dom))
        n_katex = len(re.findall(r'class="katex"', dom))  # one per formula, display or not
        assert n_math > 0 and n_katex >= n_math, f"{page}: {n_katex} of {n_math} formulas rendered"
        parser = _VisibleText()
        parser.feed(dom)
        text = "".join(parser.parts)
        visible = [t for t in RAW_TEX if t in text]
        visible += sorted(set(re.findall(r"\\[A-Za-z]+", text)))  # any control sequence
        assert not visible, f"{page}: raw TeX visible in the rendered page: {visible}"
