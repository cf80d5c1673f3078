"""Writing the validation report: ``report.json`` (machine-readable) and ``report.md``
(a table a person reads), both written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maml_depth._io import atomic_write_json, atomic_write_text
from maml_depth.validation.claims import ClaimResult, versions

_MARK = {"pass": "✅ pass", "fail": "❌ fail", "inconclusive": "⚠️ inconclusive",
         "error": "💥 error", "not available": "— not available"}


def format_value(x: Any) -> str:
    """A report cell: ``—`` for a missing value, 4 significant digits for a float."""
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def render_markdown(results: list[ClaimResult], meta: dict[str, Any]) -> str:
    """The validation report as Markdown: the run's budget, seed and device, then one row per
    claim (verdict, measured, theory, 95% interval, n, seconds) and each claim's summary."""
    lines = ["# maml-depth validation report", ""]
    lines.append(f"Budget `{meta.get('budget')}`, seed {meta.get('seed')}, device "
                 f"`{meta.get('device')}`, {meta.get('seconds', 0):.0f} s in all.")
    lines.append("")
    lines.append("| id | claim | verdict | measured | theory | 95% CI | n | seconds |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in results:
        ci = f"[{format_value(r.ci[0])}, {format_value(r.ci[1])}]" if r.ci else "—"
        lines.append(f"| {r.id} | {r.title} | {_MARK.get(r.verdict, r.verdict)} | "
                     f"{format_value(r.measured)} | {format_value(r.theory)} | {ci} | "
                     f"{format_value(r.n)} | "
                     f"{r.seconds:.1f} |")
    lines.append("")
    for r in results:
        lines += [f"## {r.title} (`{r.id}`) — {r.verdict}", "", f"*Claim.* {r.statement}", "",
                  f"*Reference.* {r.reference}", "", f"*Effect measured.* {r.effect or '—'}",
                  "", f"*Result.* {r.summary}", ""]
        for fig in r.figures:
            lines += [f"![{r.id}]({fig})", ""]
    v = meta.get("versions") or versions()
    lines += ["## Versions", ""] + [f"- {k}: {val}" for k, val in v.items()]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, results: list[ClaimResult], meta: dict[str, Any]
                 ) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir`` atomically; returns their paths."""
    out = Path(out_dir)
    meta = dict(meta)
    meta.setdefault("versions", versions())
    j = atomic_write_json(out / "report.json",
                          {"meta": meta, "claims": [r.to_json() for r in results]})
    m = atomic_write_text(out / "report.md", render_markdown(results, meta))
    return j, m
