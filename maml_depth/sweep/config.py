"""Sweep configuration files (TOML): a strict schema, checked before anything runs.

A sweep file has up to four tables; every key is optional except that at least one point
must result::

    [sweep]                      # about the sweep as a whole
    name = "depth"               # str: default output folder results/sweeps/<name>
    description = "..."          # str, free text
    x = "depth"                  # str: the parameter on the plot's x axis
    group_by = ["depth", "width"]  # list of str: summary groups (default: every parameter
                                 #   that varies between points, except seed)

    [fixed]                      # parameter = value, shared by every point
    alpha = 0.1

    [grid]                       # parameter = [values...]: the cartesian product
    depth = [1, 2, 3]
    seed = [0, 1, 2]

    [[points]]                   # a list of overrides; each is combined with every grid
    adapt = "top"                #   combination (omit [[points]] for a pure grid, omit
    [[points]]                   #   [grid] for a pure list)
    adapt = "all"

A point is the parameters of :data:`PARAMS` (defaults filled in), overridden by ``[fixed]``,
then by its ``[[points]]`` entry, then by its grid combination. A parameter may appear in
``[fixed]`` or ``[grid]`` but not both, and ``[[points]]`` entries may not set a grid
parameter.

Parameters (type, default — meaning):

==================  ===========================  ===============================================
``d``               int ≥ 1, 4                   input dimension d
``m``               int ≥ 1, 1                   outputs m
``depth``           int ≥ 1, 2                   layers L (1 = the shallow model W)
``width``           int ≥ 1 or [int], 8          hidden width(s); a list gives d_1..d_{L-1}
``adapt``           "top"/"all"/int/[int], "top" adapted layers (1 = input layer, L = top)
``steps``           int ≥ 1, 1                   inner steps k (alias ``inner_steps``)
``alpha``           float > 0, 0.1               inner step size α
``first_order``     bool, false                  FOMAML
``preconditioner``  str, "maml"                  inner-update meta-optimizer (registered name;
                                                 alias ``optimizer``)
``n_support``       int ≥ 1, 10                  support samples n per task (alias ``shots``)
``n_query``         int ≥ 1 or "population"      query samples (default: exact population loss)
``condition``       float ≥ 1, 1.0               condition number κ of Σ (eigenvalues log-spaced
                                                 in [1, κ], scaled to mean 1; alias
                                                 ``anisotropy``)
``rotation``        bool, true                   rotate Σ and Λ by Haar-random rotations
``lam_rank``        int in 1..d or "full"        rank of Λ = τ² R diag(1,…,1,0,…,0) Rᵀ
``tau``             float ≥ 0, 1.0               task spread τ
``sigma``           float ≥ 0, 0.1               label noise standard deviation σ (alias ``noise``)
``w_bar``           float ≥ 0, 0.0               norm of each row of W̄ (drawn in the range of Λ)
``init``            "balanced"/"gaussian"/…      initialisation of the network
``init_scale``      float > 0, 0.5               its scale
``meta_steps``      int ≥ 1, 200                 outer steps
``meta_batch``      int ≥ 1, 16                  tasks per outer step
``lr``              float > 0, 0.01              outer learning rate
``outer_optimizer`` "adam"/"sgd", "adam"         outer optimizer
``eval_tasks``      int ≥ 2, 1000                fresh tasks for the post-adaptation loss
``dtype``           "float64"/"float32"          precision
``seed``            int ≥ 0, 0                   seed of the task family, init and training
==================  ===========================  ===============================================

The parameter names are the user-facing names of the Python API and the CLI; the older
spellings are accepted as aliases (:data:`ALIASES`) and mapped onto them: ``shots`` →
``n_support``, ``anisotropy`` → ``condition``, ``inner_steps`` → ``steps``, ``optimizer`` →
``preconditioner``, ``noise`` → ``sigma`` (giving both spellings in one table is an error).
Records, summaries and point keys use the new names only.

Every violation raises :class:`~maml_depth.errors.ConfigError` with one line that starts
with the offending key (``grid.depth[1] must be a positive integer …``).
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maml_depth import _checks
from maml_depth.common.store import canonical_json, package_version, point_key
from maml_depth.errors import ConfigError, InvalidArgumentError

try:  # Python ≥ 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]

SECTIONS = ("sweep", "fixed", "grid", "points")
SWEEP_KEYS = ("name", "description", "x", "group_by")

# --- value checkers: (where, value) -> normalised value, or ConfigError naming `where` ------
# Every checker is a maml_depth._checks validator whose InvalidArgumentError (naming `where`,
# showing the value, saying what is accepted) is re-raised as a ConfigError.
Checker = Callable[[str, Any], Any]


def _config(check: Callable[..., Any], **kw: Any) -> Checker:
    """``check(where, value, **kw)`` with its errors as :class:`ConfigError`."""
    def run(where: str, v: Any) -> Any:
        try:
            return check(where, v, **kw)
        except ConfigError:
            raise
        except InvalidArgumentError as exc:
            raise ConfigError(str(exc)) from None
    return run


pos_int = _config(_checks.integer)


def _choice(*options: str) -> Checker:
    return _config(_checks.choice, options=options)


def _width(where: str, v: Any) -> int | list[int]:
    if isinstance(v, list):
        return [pos_int(f"{where}[{i}]", w) for i, w in enumerate(v)]
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(
            f"{where} must be a positive integer or a list of hidden widths, "
            f"got {_checks.type_name(v)} {v!r}")
    return pos_int(where, v)


def _int_or(word: str, what: str) -> Checker:
    """A positive integer or the word ``word``."""
    def check(where: str, v: Any) -> int | str:
        if isinstance(v, str) and v.strip().lower() == word:
            return word
        if isinstance(v, int) and not isinstance(v, bool):
            return pos_int(where, v)
        raise ConfigError(f"{where} must be {what} or {word!r}, got {v!r}")
    return check


def _optimizer(where: str, v: Any) -> str:
    from maml_depth.numerics import get_preconditioner  # the package registers every one

    if not isinstance(v, str):
        raise ConfigError(f"{where} must be a string, got {_checks.type_name(v)} {v!r}")
    try:
        return get_preconditioner(v).name
    except InvalidArgumentError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _real(low: float, *, open_low: bool = False) -> Checker:
    return _config(_checks.number, low=low, open_low=open_low)


@dataclass(frozen=True)
class Param:
    """One sweep parameter: its checker, default and meaning."""

    check: Checker
    default: Any
    doc: str


#: Every parameter a point has, with its checker and default (see the module docstring).
PARAMS: dict[str, Param] = {
    "d": Param(pos_int, 4, "input dimension d"),
    "m": Param(pos_int, 1, "outputs m"),
    "depth": Param(pos_int, 2, "layers L"),
    "width": Param(_width, 8, "hidden width(s)"),
    "adapt": Param(_config(_checks.parse_adapt), "top", "adapted layers"),
    "steps": Param(pos_int, 1, "inner steps k"),
    "alpha": Param(_real(0.0, open_low=True), 0.1, "inner step size α"),
    "first_order": Param(_config(_checks.boolean), False, "FOMAML"),
    "preconditioner": Param(_optimizer, "maml", "inner-update meta-optimizer"),
    "n_support": Param(pos_int, 10, "support samples n"),
    "n_query": Param(_int_or("population", "a positive integer"), "population",
                     "query samples or 'population'"),
    "condition": Param(_real(1.0), 1.0, "condition number of Σ"),
    "rotation": Param(_config(_checks.boolean), True, "Haar-rotate Σ and Λ"),
    "lam_rank": Param(_int_or("full", "a positive integer (≤ d)"), "full", "rank of Λ"),
    "tau": Param(_real(0.0), 1.0, "task spread τ"),
    "sigma": Param(_real(0.0), 0.1, "noise std σ"),
    "w_bar": Param(_real(0.0), 0.0, "row norm of W̄"),
    "init": Param(_choice("balanced", "gaussian", "identity"), "balanced", "initialisation"),
    "init_scale": Param(_real(0.0, open_low=True), 0.5, "init scale"),
    "meta_steps": Param(pos_int, 200, "outer steps"),
    "meta_batch": Param(pos_int, 16, "tasks per outer step"),
    "lr": Param(_real(0.0, open_low=True), 0.01, "outer learning rate"),
    "outer_optimizer": Param(_choice("adam", "sgd"), "adam", "outer optimizer"),
    "eval_tasks": Param(_config(_checks.integer, minimum=2), 1000, "fresh evaluation tasks"),
    "dtype": Param(_choice("float64", "float32"), "float64", "precision"),
    "seed": Param(_config(_checks.integer, minimum=0), 0, "seed"),
}


#: The fields of a record's ``result`` (all numbers may be ``null``):
RESULT_FIELDS: dict[str, str] = {
    "post_loss": "mean post-adaptation query loss on eval_tasks fresh tasks",
    "post_loss_se": "its standard error",
    "pre_loss": "mean query loss of the meta-learned initialisation on the same tasks",
    "eval_tasks": "number of fresh evaluation tasks",
    "steps_done": "outer steps completed",
    "train_post_loss": "last logged meta-batch post-adaptation loss during training",
    "theory_loss": "closed-form prediction of post_loss at the meta-training optimum "
                   "(theory.reference_losses)",
    "theory_kind": "which predictions: 'deep: E L(P*)' or 'shallow: E L(alpha I)', and "
                   "'at weights: exact expected_deep_loss' or 'at weights: Monte Carlo "
                   "estimate' (or null)",
    "theory_note": "why a prediction is missing or only an estimate (or null)",
    "theory_gap": "post_loss - theory_loss",
    "theory_loss_at_weights": "expected post-adaptation loss of the trained weights for the "
                              "point's adapted layers and steps: exact (expected_deep_loss) "
                              "inside the engine's reach, else a Monte Carlo estimate (see "
                              "theory_kind); a diagnostic, not a measurement",
    "theory_loss_at_weights_se": "standard error of theory_loss_at_weights (0 when exact, the "
                                 "Monte Carlo standard error when estimated)",
    "converged": "meta_train's convergence verdict (true/false; null if it diverged)",
    "convergence": "meta_train's convergence report (Convergence.as_dict(): converged, "
                   "rel_change, noise, grad_drift, grad_norm, rtol, gtol, reason) or null",
    "precond_rel_err": "||P - P*||_F / ||P*||_F of the extracted P = alpha B_L^T B_L",
    "precond_alignment": "<P, P*>_F / (||P||_F ||P*||_F)",
    "w_dist": "||W - W_bar||_F of the meta-learned end-to-end map",
}


#: An older spelling → the parameter (the user-facing name of the Python API and the CLI) it
#: sets. Both spellings are accepted; giving both in one table is an error.
ALIASES: dict[str, str] = {"shots": "n_support", "anisotropy": "condition",
                           "inner_steps": "steps", "optimizer": "preconditioner",
                           "noise": "sigma"}


def _canonical(where: str, table: dict[str, Any]) -> dict[str, Any]:
    """``table`` with aliased keys mapped onto :data:`PARAMS` names."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        key = ALIASES.get(k, k)
        if key in out:
            other = next(a for a in table if ALIASES.get(a, a) == key and a != k)
            raise ConfigError(f"{where}: {k!r} and {other!r} name the same parameter; keep one")
        out[key] = v
    return out


def _spelling(table: Mapping[str, Any]) -> dict[str, str]:
    """Parameter name → the spelling the user wrote (for error messages)."""
    return {ALIASES.get(k, k): k for k in table}


def defaults() -> dict[str, Any]:
    """A point with every parameter at its default."""
    return {k: (list(p.default) if isinstance(p.default, list) else p.default)
            for k, p in PARAMS.items()}


def _unknown(where: str, key: str, known: Any) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    return ConfigError(f"{where}: unknown key {key!r}{hint}")


def check_param(where: str, name: str, value: Any) -> Any:
    """Check one parameter value; ``where`` names it in the error (e.g. ``grid.depth[1]``)."""
    if name not in PARAMS:
        raise _unknown(where.rsplit(".", 1)[0] if "." in where else where, name, PARAMS)
    return PARAMS[name].check(where, value)


def hidden_widths(point: Mapping[str, Any]) -> tuple[int, ...]:
    """``(d_1, …, d_{L−1})`` of a point."""
    w, L = point["width"], point["depth"]
    return tuple(w) if isinstance(w, list) else (int(w),) * (L - 1)


def layer_dims(point: Mapping[str, Any]) -> tuple[int, ...]:
    """``(d_0, …, d_L)`` of a point."""
    return (point["d"], *hidden_widths(point), point["m"])


def adapted_layers(point: Mapping[str, Any]) -> tuple[int, ...]:
    """The point's adapted layers as sorted 1-based indices."""
    a, L = point["adapt"], point["depth"]
    if a == "top":
        return (L,)
    if a == "all":
        return tuple(range(1, L + 1))
    return tuple(sorted({a} if isinstance(a, int) else set(a)))


def check_point(point: Mapping[str, Any], where: str) -> None:
    """Checks that involve several parameters of one point (``where`` locates the point)."""
    L = point["depth"]
    w = point["width"]
    if isinstance(w, list) and len(w) != L - 1:
        raise ConfigError(
            f"width ({where}) lists {len(w)} hidden widths but depth {L} needs {L - 1}")
    for j in adapted_layers(point):
        if not 1 <= j <= L:
            raise ConfigError(
                f"adapt ({where}) names layer {j}, but layers are numbered 1..{L} "
                f"(1 = input layer, {L} = top layer)")
    r = point["lam_rank"]
    if r != "full" and r > point["d"]:
        raise ConfigError(f"lam_rank ({where}) is {r}, more than d = {point['d']}")


@dataclass(frozen=True)
class SweepConfig:
    """A checked sweep file. ``grid`` keeps the file's order; ``points`` is ``[{}]`` for a
    pure grid."""

    name: str
    fixed: dict[str, Any]
    grid: dict[str, list[Any]]
    points: list[dict[str, Any]]
    description: str = ""
    x: str | None = None
    group_by: tuple[str, ...] | None = None
    source: str | None = None
    text: str | None = field(default=None, repr=False)

    def expand(self) -> list[Point]:
        """The points (see :func:`expand_points`)."""
        return expand_points(self)


# --- points: the expansion of a config, and the key that names each point ----------------
# A point is a complete parameter dict (every key of PARAMS, defaults filled in, values
# normalised by their checkers so that ``alpha = 1`` and ``alpha = 1.0`` are the same point);
# its key is :func:`maml_depth.common.store.point_key` (sha256 of the canonical JSON of the
# point and the package version). Two points with equal parameters are one point.
@dataclass(frozen=True)
class Point:
    """One point of a sweep: its ``key``, its complete ``params`` and its position."""

    key: str
    params: dict[str, Any]
    index: int

    def label(self, keys: list[str] | tuple[str, ...] | None = None) -> str:
        """``"k=v, …"`` of the point's parameters ``keys`` (default: all, sorted), for tables
        and legends."""
        ks = keys if keys is not None else sorted(self.params)
        return ", ".join(f"{k}={self.params[k]}" for k in ks)


def expand_points(cfg: SweepConfig) -> list[Point]:
    """Every point of ``cfg`` in order: ``[[points]]`` entries outermost, then the grid in
    the file's key order (last key fastest); duplicates are dropped (first kept).

    Raises :class:`ConfigError` (naming the key and the point) for cross-parameter
    violations, e.g. an adapted layer beyond ``depth``.
    """
    grid_keys = list(cfg.grid)
    combos = list(itertools.product(*(cfg.grid[k] for k in grid_keys)))
    out: list[Point] = []
    seen: set[str] = set()
    version = package_version()
    for i, entry in enumerate(cfg.points):
        for combo in combos:
            params = defaults() | cfg.fixed | entry | dict(zip(grid_keys, combo, strict=True))
            varied = {k: params[k] for k in (*entry, *grid_keys)}
            where = ", ".join(f"{k}={v}" for k, v in varied.items()) or "every point"
            if len(cfg.points) > 1:
                where = f"points[{i}]: {where}"
            check_point(params, where)
            key = point_key(params, version)
            if key in seen:
                continue
            seen.add(key)
            out.append(Point(key=key, params=params, index=len(out)))
    if not out:  # pragma: no cover - every section is non-empty by construction
        raise ConfigError("the sweep has no points")
    return out


def varying_params(points: list[Point]) -> list[str]:
    """Parameters that take more than one value among ``points`` (schema order)."""
    if not points:
        return []
    keys = list(points[0].params)
    return [k for k in keys
            if len({canonical_json(p.params[k]) for p in points}) > 1]


def _table(where: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ConfigError(f"{where} must be a table, got {_checks.type_name(v)} {v!r}")
    return v


def parse_config(data: Mapping[str, Any], *, source: str | None = None,
                 default_name: str = "sweep", text: str | None = None) -> SweepConfig:
    """Check a parsed TOML document and return the :class:`SweepConfig`.

    Every point is expanded and checked too, so a config that loads runs.
    """
    for key in data:
        if key not in SECTIONS:
            raise _unknown("sweep config", key, SECTIONS)
    meta = _table("[sweep]", data.get("sweep", {}))
    for key in meta:
        if key not in SWEEP_KEYS:
            raise _unknown("sweep", key, SWEEP_KEYS)
    name = meta.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(
            f"sweep.name must be a non-empty string of letters, digits, '_', '-', '.', "
            f"got {name!r}")
    description = meta.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"sweep.description must be a string, got {description!r}")

    raw_fixed = _table("[fixed]", data.get("fixed", {}))
    said = _spelling(raw_fixed)
    fixed = {k: check_param(f"fixed.{said.get(k, k)}", k, v)
             for k, v in _canonical("fixed", raw_fixed).items()}
    grid: dict[str, list[Any]] = {}
    raw_grid = _table("[grid]", data.get("grid", {}))
    said = _spelling(raw_grid)
    for k, values in _canonical("grid", raw_grid).items():
        if k not in PARAMS:
            raise _unknown("grid", k, PARAMS)
        spelt = said.get(k, k)
        if not isinstance(values, list):
            raise ConfigError(
                f"grid.{spelt} must be a list of values (e.g. {spelt} = [{values!r}]), "
                f"got {_checks.type_name(values)} {values!r}")
        if not values:
            raise ConfigError(f"grid.{spelt} is empty: give at least one value")
        if k in fixed:
            raise ConfigError(f"grid.{spelt} is also set in [fixed]: keep one of them")
        grid[k] = [check_param(f"grid.{spelt}[{i}]", k, v) for i, v in enumerate(values)]
    raw_points = data.get("points", None)
    if raw_points is None:
        points: list[dict[str, Any]] = [{}]
    else:
        if not isinstance(raw_points, list):
            raise ConfigError(f"points must be an array of tables ([[points]]), "
                              f"got {_checks.type_name(raw_points)}")
        if not raw_points:
            raise ConfigError("points is empty: give at least one [[points]] table")
        points = []
        for i, entry in enumerate(raw_points):
            raw_entry = _table(f"points[{i}]", entry)
            said = _spelling(raw_entry)
            entry = _canonical(f"points[{i}]", raw_entry)
            checked = {}
            for k, v in entry.items():
                spelt = said.get(k, k)
                checked[k] = check_param(f"points[{i}].{spelt}", k, v)
                if k in grid:
                    raise ConfigError(
                        f"points[{i}].{spelt} is also a [grid] parameter: keep one")
            points.append(checked)

    varying = [k for k in PARAMS if k in grid or any(k in p for p in points)]
    x = meta.get("x", None)
    x = ALIASES.get(x, x) if isinstance(x, str) else x
    if x is not None:
        if not isinstance(x, str):
            raise ConfigError(f"sweep.x must be a parameter name, got {x!r}")
        if x not in PARAMS:
            raise _unknown("sweep.x", x, PARAMS)
    group_by = meta.get("group_by", None)
    if group_by is not None:
        if not isinstance(group_by, list) or not all(isinstance(g, str) for g in group_by):
            raise ConfigError(f"sweep.group_by must be a list of parameter names, "
                              f"got {group_by!r}")
        group_by = [ALIASES.get(g, g) for g in group_by]
        for g in group_by:
            if g not in PARAMS:
                raise _unknown("sweep.group_by", g, PARAMS)
        group_by = tuple(group_by)
    if x is None:
        cands = [k for k in varying if k != "seed"]
        x = "depth" if "depth" in cands else (cands[0] if cands else None)
    cfg = SweepConfig(name=name, fixed=fixed, grid=grid, points=points,
                      description=description, x=x, group_by=group_by, source=source,
                      text=text)
    cfg.expand()  # cross-parameter checks of every point, before anything runs
    return cfg


def load_config(path: str | Path) -> SweepConfig:
    """Read and check a sweep TOML file (see the module docstring for the schema)."""
    path = Path(path)
    if tomllib is None:  # pragma: no cover
        raise ConfigError("reading sweep configs needs Python ≥ 3.11 (tomllib)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"CONFIG: no such file {str(path)!r}") from None
    except OSError as exc:
        raise ConfigError(f"CONFIG: cannot read {str(path)!r}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"CONFIG: {path.name} is not valid TOML: {exc}") from None
    try:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem).lstrip("_.-") or "sweep"
        return parse_config(data, source=str(path), default_name=stem, text=text)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in {path.name})") from None
