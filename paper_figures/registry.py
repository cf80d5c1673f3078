"""The six paper figures: registry, build (compute or load cached data, render, save) and
the markdown gallery.

Each figure is one module with ``NUMBER``, ``NAME``, ``TITLE``, ``VERSION``, ``FIGSIZE``,
``compute(budget, progress) -> FigureData``, ``render(data) -> Figure`` and
``caption(data) -> str``. Modules are imported lazily, so listing the figures is instant.

Bump a module's ``VERSION`` whenever what its ``compute`` produces changes (or what the
shared runs of :mod:`~maml_depth.paper_figures.runs` produce): the version is part of the
cache key, so stale data are then recomputed instead of re-rendered.
"""

from __future__ import annotations

import importlib
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from maml_depth._io import atomic_write_text
from maml_depth.errors import ConfigError
from maml_depth.paper_figures import style
from maml_depth.paper_figures.budget import FigureBudget, get_budget
from maml_depth.paper_figures.cache import FigureCache, FigureData, cache_key

__all__ = [
    "FIGURES",
    "BuildResult",
    "FigureSpec",
    "build_figure",
    "gallery_markdown",
    "parse_only",
    "write_gallery",
]


@dataclass(frozen=True)
class FigureSpec:
    """A registered figure: its number, module name and one-line title."""

    number: int
    name: str
    title: str

    def module(self) -> ModuleType:
        """The figure's module, ``maml_depth.paper_figures.<name>`` (imported on first use)."""
        return importlib.import_module(f"maml_depth.paper_figures.{self.name}")

    def pixel_size(self) -> tuple[int, int]:
        """``(width, height)`` of its PNG in pixels."""
        return style.pixel_size(self.module().FIGSIZE)


FIGURES: dict[int, FigureSpec] = {
    1: FigureSpec(1, "fig1_loss_surface",
                  "Loss surface of the MAML objective: shallow vs w = w₂w₁, with trajectories"),
    2: FigureSpec(2, "fig2_training_curves",
                  "Post-adaptation loss over meta-training: Shallow vs Deep, LogR vs "
                  "LogR+LinNet"),
    3: FigureSpec(3, "fig3_depth_shots",
                  "Post-adaptation loss against depth and against the number of shots"),
    4: FigureSpec(4, "fig4_preconditioner_spectrum",
                  "Spectrum of the preconditioner extracted from a deep net, against P* and "
                  "Σ⁻¹"),
    5: FigureSpec(5, "fig5_meta_optimizers",
                  "Meta-optimizers on the shallow model vs deep MAML, with each class's "
                  "optimum"),
    6: FigureSpec(6, "fig6_alignment",
                  "Bottom layers align with the task subspace (principal angles)"),
}


@dataclass
class BuildResult:
    """One built figure: files written, whether its data came from the cache, timings."""

    spec: FigureSpec
    paths: list[Path]
    cached: bool
    compute_seconds: float
    render_seconds: float
    data: FigureData
    caption: str = ""
    key: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def parse_only(text: str | None) -> list[int]:
    """``"1,3"`` → ``[1, 3]`` (all figures for None/empty); also accepts ``fig2``."""
    if text is None or not text.strip():
        return sorted(FIGURES)
    out: list[int] = []
    for part in text.split(","):
        p = part.strip().lower().removeprefix("fig")
        if not p:
            continue
        try:
            num = int(p)
        except ValueError:
            raise ConfigError(
                f"--only must be comma-separated figure numbers like 1,3 (known: "
                f"{sorted(FIGURES)}), got {text!r}") from None
        if num not in FIGURES:
            raise ConfigError(f"--only: no figure {num}; known: {sorted(FIGURES)}")
        if num not in out:
            out.append(num)
    if not out:
        raise ConfigError(f"--only names no figure: {text!r}")
    return sorted(out)


def load_or_compute(spec: FigureSpec, budget: FigureBudget, cache: FigureCache | None, *,
                    recompute: bool = False, progress: bool = False
                    ) -> tuple[FigureData, bool, float, str]:
    """``(data, from_cache, seconds, key)``."""
    mod = spec.module()
    key = cache_key(spec.name, budget, int(mod.VERSION))
    if cache is not None and not recompute:
        hit = cache.load(key)
        if hit is not None:
            return hit, True, 0.0, key
    t0 = time.perf_counter()
    data: FigureData = mod.compute(budget, progress=progress)
    seconds = time.perf_counter() - t0
    data.meta.setdefault("budget", budget.name)
    data.meta["compute_seconds"] = seconds
    if cache is not None:
        cache.save(key, data)
    return data, False, seconds, key


def build_figure(
    number: int,
    budget: str | FigureBudget,
    out_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    recompute: bool = False,
    progress: bool = False,
    formats: Sequence[str] = style.FORMATS,
) -> BuildResult:
    """Compute (or load) the data of figure ``number``, render it and write
    ``out_dir/<name>.png`` and ``.pdf``. ``cache_dir=None`` disables the cache."""
    if number not in FIGURES:
        raise ConfigError(f"no figure {number}; known: {sorted(FIGURES)}")
    spec = FIGURES[number]
    b = get_budget(budget)
    cache = FigureCache(cache_dir) if cache_dir is not None else None
    data, cached, seconds, key = load_or_compute(spec, b, cache, recompute=recompute,
                                                 progress=progress)
    mod = spec.module()
    t0 = time.perf_counter()
    with style.context():
        fig = mod.render(data)
        paths = style.save(fig, out_dir, spec.name, formats)
    return BuildResult(spec, paths, cached, seconds, time.perf_counter() - t0, data,
                       mod.caption(data), key)


# -- gallery ---------------------------------------------------------------------------------
_SECTION = re.compile(r"^## Figure (\d+) ", re.M)


def existing_sections(readme: str | Path) -> dict[int, str]:
    """The ``## Figure N`` sections of an existing gallery page (empty if there is none)."""
    try:
        text = Path(readme).read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return {}
    starts = list(_SECTION.finditer(text))
    out: dict[int, str] = {}
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        out[int(m.group(1))] = text[m.start():end].rstrip() + "\n"
    return out


def gallery_markdown(results: Sequence[BuildResult], readme: str | Path,
                     budget: FigureBudget, *, command: str | None = None,
                     keep: dict[int, str] | None = None) -> str:
    """The markdown gallery: each figure's PNG (linked to its PDF), title and caption.

    ``keep``: sections of figures not built in this run (kept as they are, in figure
    order); ``command``: the command that built this run's figures, recorded under each.
    """
    base = Path(readme).resolve().parent
    lines = [
        "# Paper figures",
        "",
        "Regenerated from this package: theory curves from `maml_depth.theory` (closed forms "
        "and exact polynomials), measured points from real meta-training and autograd "
        "adaptation on fresh tasks with `maml_depth.numerics`. Error bars and bands are 95% "
        "confidence intervals; each caption states over what and n.",
        "",
        "```",
        f"maml-depth figures --budget {budget.name} --out paper_figures/gallery "
        "--readme paper_figures/README.md",
        "```",
        "",
        "(`--only 1,3` builds a subset, `--budget tiny|quick|full` sets the work, `--out` the "
        "folder of the PNG/PDF files; `maml-depth figures --help` lists the options.)",
        "",
        f"Budget `{budget.name}`: {budget.seeds} seeds per curve/point, "
        f"{budget.meta_steps} meta-training steps (linear regression), "
        f"{budget.logr_steps} (LogR), {budget.eval_tasks} fresh evaluation tasks per "
        "trained network. Data are cached (`.npz` + `.json`, keyed by figure, budget and "
        "version), so re-rendering takes seconds; `--recompute` ignores the cache.",
        "",
    ]
    sections: dict[int, list[str]] = {
        num: [text.rstrip("\n"), ""] for num, text in (keep or {}).items()}
    for r in results:
        lines_before, lines = lines, []
        png = next((p for p in r.paths if p.suffix == ".png"), None)
        pdf = next((p for p in r.paths if p.suffix == ".pdf"), None)
        lines += [f"## Figure {r.spec.number} — {r.spec.title}", ""]
        if png is not None:
            rel = Path(os.path.relpath(png.resolve(), base)).as_posix()
            img = f"![Figure {r.spec.number}: {r.spec.title}]({rel})"
            if pdf is not None:
                img = f"[{img}]({Path(os.path.relpath(pdf.resolve(), base)).as_posix()})"
            lines += [img, ""]
        lines += [r.caption, ""]
        built = f"; built by `{command}`" if command else ""
        lines += [f"*Source: `paper_figures/{r.spec.name}.py`, budget "
                  f"`{r.data.meta.get('budget', budget.name)}`{built}.*", ""]
        sections[r.spec.number] = lines
        lines = lines_before
    for num in sorted(sections):
        lines += sections[num]
    return "\n".join(lines).rstrip() + "\n"


def write_gallery(results: Sequence[BuildResult], readme: str | Path,
                  budget: FigureBudget, *, command: str | None = None) -> Path:
    """Write :func:`gallery_markdown` to ``readme`` atomically; the sections of figures
    not built in this run are kept from the existing page (a subset never removes others)."""
    built = {r.spec.number for r in results}
    keep = {n: t for n, t in existing_sections(readme).items() if n not in built}
    return atomic_write_text(readme, gallery_markdown(results, readme, budget,
                                                      command=command, keep=keep))
