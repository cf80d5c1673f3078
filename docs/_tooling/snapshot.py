"""Trim a ``maml-depth validate`` report.json into the snapshot the claims page shows.

Usage (what ``make docs-snapshot`` runs)::

    maml-depth validate --budget quick --out build/docs/validate --no-progress
    python docs/_tooling/snapshot.py build/docs/validate/report.json docs/_data/claims-quick.json

Keeps, per claim, the verdict, measured and theoretical values, the confidence interval with
its level and sample size, the effect and the one-line summary; and, for the run, the command,
budget, seed, device, versions and the date. Drops configurations, details and figures.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from pathlib import Path

KEEP = ("id", "verdict", "measured", "theory", "ci", "ci_level", "n", "effect", "summary",
        "seconds")


def trim(report: dict, date: str) -> dict:
    meta = report.get("meta", {})
    versions = meta.get("versions", {})
    run = {
        "command": f"maml-depth validate --budget {meta.get('budget')} --seed {meta.get('seed')}"
                   f" --suite {meta.get('suite')} --no-progress",
        "budget": meta.get("budget"), "seed": meta.get("seed"), "suite": meta.get("suite"),
        "device": meta.get("device"), "seconds": round(float(meta.get("seconds", 0.0)), 1),
        "date": date, **{k: versions.get(k) for k in ("maml_depth", "torch", "python",
                                                      "numpy", "sympy", "platform")},
    }
    claims = [{k: c.get(k) for k in KEEP} for c in report.get("claims", [])]
    for c in claims:
        c["seconds"] = round(float(c["seconds"] or 0.0), 1)
    return {"run": run, "claims": claims}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = Path(argv[1]), Path(argv[2])
    report = json.loads(src.read_text(encoding="utf-8"))
    date = _dt.datetime.fromtimestamp(src.stat().st_mtime, tz=_dt.timezone.utc).strftime(
        "%Y-%m-%d")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp")
    tmp.write_text(json.dumps(trim(report, date), indent=1, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    tmp.replace(dst)
    print(f"wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
