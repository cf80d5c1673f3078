"""Nonlinear task families: logistic binary classification, sine regression, digits few-shot.

Each family follows the :class:`~maml_depth.numerics.engines.TaskFamily` protocol of the
engines (``loss_fn``, ``sample(T, generator) -> TaskBatch``, ``query_loss``) and the package
conventions: rows are samples (inputs ``(T, n, d)``, targets ``(T, n, m)``), every random
draw comes from the explicit ``torch.Generator`` (same generator state → same batch), and
the family's tensors live on one device with one dtype (``to(device, dtype)``).

- :class:`LogisticTasks` — "LogR": a linear teacher ``w_t = w̄ + z``, ``z ~ N(0, τ² I)``,
  ``x ~ N(0, Σ)``, label ``y = 1[w_tᵀx > 0]`` (or ``y ~ Bernoulli(s(w_tᵀx / T))`` with a
  temperature T > 0); logistic loss ``ℓ = (1/n) Σ_i [log(1 + e^{f_i}) − y_i f_i]``.
- :class:`SineTasks` — ``y = A sin(x − φ)``, ``A ~ U[0.1, 5]``, ``φ ~ U[0, π]``,
  ``x ~ U[−5, 5]``, K shots; squared loss ``‖f − y‖²/(2n)`` (half the mean squared error).
- :class:`DigitsFewShot` — scikit-learn's bundled 8 × 8 digits (``load_digits``, no
  download); each digit rotated by 0/90/180/270° is its own class (40 classes); digits 0–4
  with their rotations (20 classes) are the meta-training split, 5–9 (20) the meta-test
  split; N-way K-shot episodes with one-hot targets and the softmax cross-entropy
  ``ℓ = −(1/n) Σ_i Σ_c y_ic log softmax(f_i)_c``.

References: Finn, Abbeel, Levine (2017), §5.1 (sine) and §5.2 (few-shot classification,
rotated Omniglot classes); Arnold, Iqbal, Sha (AISTATS 2021), §3 (LogR vs LogR+LinNet), §5.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError
from maml_depth.numerics.losses import mse_loss
from maml_depth.numerics.networks import Params
from maml_depth.numerics.tasks import TaskBatch

__all__ = [
    "DIGITS_TEST_CLASSES",
    "DIGITS_TRAIN_CLASSES",
    "DigitsFewShot",
    "LogisticTasks",
    "SineTasks",
    "binary_accuracy",
    "classification_accuracy",
    "cross_entropy_loss",
    "digits_classes",
    "logistic_loss",
]


# -- losses and metrics --------------------------------------------------------------------
def logistic_loss(logits: Tensor, target: Tensor) -> Tensor:
    """``(1/n) Σ_i [log(1 + e^{f_i}) − y_i f_i]`` for logits ``f`` and labels ``y ∈ {0, 1}``,
    both ``(n, 1)`` (binary cross-entropy with logits, averaged over samples).

    References: Arnold et al. (2021), §3 (LogR).
    """
    return (torch.nn.functional.softplus(logits) - target * logits).sum() / logits.shape[-2]


def cross_entropy_loss(logits: Tensor, target: Tensor) -> Tensor:
    """``−(1/n) Σ_i Σ_c y_ic log softmax(f_i)_c`` for logits and one-hot (or soft) targets,
    both ``(n, C)``.

    References: Finn et al. (2017), §5.2.
    """
    return -(target * torch.log_softmax(logits, dim=-1)).sum() / logits.shape[-2]


def binary_accuracy(logits: Tensor, target: Tensor) -> Tensor:
    """Fraction of samples with ``1[f_i > 0] = y_i`` (``(n, 1)`` each)."""
    return ((logits > 0).to(target.dtype) == target).to(logits.dtype).mean()


def classification_accuracy(logits: Tensor, target: Tensor) -> Tensor:
    """Fraction of samples whose arg-max logit is the arg-max of the one-hot target."""
    return (logits.argmax(-1) == target.argmax(-1)).to(logits.dtype).mean()


def _query(model: nn.Module, params: Params, Xq: Tensor | None, Yq: Tensor | None,
           fn: Callable[[Tensor, Tensor], Tensor], family: str) -> Tensor:
    if Xq is None or Yq is None:
        raise InvalidArgumentError(f"{family} has no population query loss: set n_query ≥ 1")
    return fn(functional_call(model, params, (Xq,)), Yq)


# -- LogR ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogisticTasks:
    """Binary classification with a linear teacher ("LogR" tasks).

    A task is ``w_t = w̄ + τ z`` (``z ~ N(0, I_d)``); inputs ``x ~ N(0, Σ)``; labels
    ``y = 1[w_tᵀx > 0]`` when ``temperature == 0``, else ``y ~ Bernoulli(s(w_tᵀx / T))``
    with ``s`` the logistic function. Support loss :func:`logistic_loss`.

    Args:
        d: input dimension.
        n_support, n_query: samples per task (the query set is required: no closed form).
        tau: task spread τ ≥ 0. W_bar: the mean teacher ``(1, d)`` (default 0).
        Sigma: input covariance (default ``I_d``). temperature: label noise T ≥ 0.

    References: Arnold et al. (2021), §3 ("LogR" vs "LogR+LinNet").
    """

    d: int
    n_support: int = 10
    n_query: int = 50
    tau: float = 1.0
    W_bar: Tensor | None = None
    Sigma: Tensor | None = None
    temperature: float = 0.0
    dtype: torch.dtype = torch.float64
    device: torch.device | str = "cpu"
    _wb: Tensor = field(init=False, repr=False)
    _sig_half: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        d = _checks.positive_int("d", self.d)
        object.__setattr__(self, "d", d)
        object.__setattr__(self, "n_support", _checks.positive_int("n_support", self.n_support))
        object.__setattr__(self, "n_query", _checks.positive_int("n_query", self.n_query))
        object.__setattr__(self, "tau", _checks.finite_float("tau", self.tau, nonneg=True))
        object.__setattr__(self, "temperature",
                           _checks.finite_float("temperature", self.temperature, nonneg=True))
        kw: dict[str, Any] = dict(dtype=self.dtype, device=self.device)
        wb = torch.zeros(1, d, **kw) if self.W_bar is None else self.W_bar.to(**kw)
        _checks.shape("W_bar", wb.shape, (1, d))
        S = torch.eye(d, **kw) if self.Sigma is None else self.Sigma.to(**kw)
        _checks.shape("Sigma", S.shape, (d, d))
        ev, U = torch.linalg.eigh(0.5 * (S + S.mT))
        if float(ev.min()) <= 0:
            raise InvalidArgumentError("Sigma must be positive definite (an eigenvalue is ≤ 0)")
        object.__setattr__(self, "_wb", wb)
        object.__setattr__(self, "_sig_half", (U * ev.sqrt()) @ U.mT)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
           ) -> LogisticTasks:
        """The same family with its tensors on ``device`` and/or in ``dtype``."""
        return LogisticTasks(self.d, self.n_support, self.n_query, self.tau, self._wb,
                             self._sig_half @ self._sig_half, self.temperature,
                             dtype or self.dtype, device or self.device)

    @property
    def loss_fn(self) -> Callable[[Tensor, Tensor], Tensor]:
        """:func:`logistic_loss`: ``(1/n) Σ_i [log(1 + e^{f_i}) − y_i f_i]``."""
        return logistic_loss

    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        """``T`` tasks: X ``(T, n, d)``, Y ``(T, n, 1)`` in {0, 1}, W_t ``(T, 1, d)``."""
        T = _checks.positive_int("num_tasks", num_tasks)
        kw: dict[str, Any] = dict(dtype=self.dtype, device=self.device, generator=generator)
        W_t = self._wb + self.tau * torch.randn(T, 1, self.d, **kw)

        def draw(k: int) -> tuple[Tensor, Tensor]:
            X = torch.randn(T, k, self.d, **kw) @ self._sig_half
            f = X @ W_t.mT
            if self.temperature == 0:
                Y = (f > 0).to(self.dtype)
            else:
                u = torch.rand(T, k, 1, **kw)
                Y = (u < torch.sigmoid(f / self.temperature)).to(self.dtype)
            return X, Y

        X, Y = draw(self.n_support)
        Xq, Yq = draw(self.n_query)
        return TaskBatch(X, Y, Xq, Yq, W_t)

    def query_loss(self, model: nn.Module, params: Params, Xq: Tensor | None,
                   Yq: Tensor | None, W_t: Tensor) -> Tensor:
        """Logistic loss on the query set."""
        return _query(model, params, Xq, Yq, logistic_loss, "LogisticTasks")

    def query_accuracy(self, model: nn.Module, params: Params, Xq: Tensor | None,
                       Yq: Tensor | None, W_t: Tensor) -> Tensor:
        """Accuracy on the query set."""
        return _query(model, params, Xq, Yq, binary_accuracy, "LogisticTasks")


# -- sine regression ----------------------------------------------------------------------
@dataclass(frozen=True)
class SineTasks:
    """Sine regression: ``y = A sin(x − φ)`` (Finn et al. 2017, §5.1).

    ``A ~ U[amplitude]``, ``φ ~ U[phase]``, ``x ~ U[x_range]``; K support shots and
    ``n_query`` query points per task. Support/query loss :func:`mse_loss`
    (``‖f − y‖²/(2n)``: half the mean squared error). ``W_t`` holds ``(A, φ)`` per task.

    References: Finn, Abbeel, Levine (2017), §5.1.
    """

    n_support: int = 10
    n_query: int = 10
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    dtype: torch.dtype = torch.float64
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_support", _checks.positive_int("n_support", self.n_support))
        object.__setattr__(self, "n_query", _checks.positive_int("n_query", self.n_query))
        for name in ("amplitude", "phase", "x_range"):
            lo, hi = getattr(self, name)
            lo = _checks.finite_float(f"{name}[0]", lo)
            hi = _checks.finite_float(f"{name}[1]", hi)
            if hi < lo:
                raise InvalidArgumentError(f"{name} must be (low, high) with low ≤ high, "
                                           f"got {(lo, hi)!r}")
            object.__setattr__(self, name, (lo, hi))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
           ) -> SineTasks:
        """The same family with its tensors on ``device`` and/or in ``dtype``."""
        return SineTasks(self.n_support, self.n_query, self.amplitude, self.phase,
                         self.x_range, dtype or self.dtype, device or self.device)

    @property
    def loss_fn(self) -> Callable[[Tensor, Tensor], Tensor]:
        """:func:`mse_loss`: ``‖pred − target‖²/(2n)``."""
        return mse_loss

    def _uniform(self, shape: tuple[int, ...], lohi: tuple[float, float],
                 generator: torch.Generator) -> Tensor:
        u = torch.rand(shape, dtype=self.dtype, device=self.device, generator=generator)
        return lohi[0] + (lohi[1] - lohi[0]) * u

    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        """``T`` tasks: X ``(T, K, 1)``, Y ``(T, K, 1)``, W_t ``(T, 2)`` = (A, φ)."""
        T = _checks.positive_int("num_tasks", num_tasks)
        A = self._uniform((T, 1, 1), self.amplitude, generator)
        ph = self._uniform((T, 1, 1), self.phase, generator)
        X = self._uniform((T, self.n_support, 1), self.x_range, generator)
        Xq = self._uniform((T, self.n_query, 1), self.x_range, generator)
        return TaskBatch(X, A * torch.sin(X - ph), Xq, A * torch.sin(Xq - ph),
                         torch.cat([A, ph], dim=-1).reshape(T, 2))

    def query_loss(self, model: nn.Module, params: Params, Xq: Tensor | None,
                   Yq: Tensor | None, W_t: Tensor) -> Tensor:
        """``‖f(Xq) − Yq‖²/(2 n_q)`` on the query set."""
        return _query(model, params, Xq, Yq, mse_loss, "SineTasks")


# -- digits few-shot ----------------------------------------------------------------------
#: Class id ``4·digit + k`` is the digit rotated by ``k·90°``.
DIGITS_TRAIN_CLASSES: tuple[int, ...] = tuple(4 * c + r for c in range(5) for r in range(4))
DIGITS_TEST_CLASSES: tuple[int, ...] = tuple(4 * c + r for c in range(5, 10) for r in range(4))


def digits_classes(split: Literal["train", "test"]) -> tuple[int, ...]:
    """Class ids of a split: ``4·digit + rotation``, digits 0–4 (train) or 5–9 (test)."""
    if split == "train":
        return DIGITS_TRAIN_CLASSES
    if split == "test":
        return DIGITS_TEST_CLASSES
    raise InvalidArgumentError(f"split must be 'train' or 'test', got {split!r}")


@functools.lru_cache(maxsize=1)
def _digits_array() -> tuple[np.ndarray, np.ndarray]:
    """``(images (1797, 8, 8) in [0, 1], labels)`` from scikit-learn's bundled file."""
    from sklearn.datasets import load_digits  # reads a file shipped inside scikit-learn

    data = load_digits()
    return (np.asarray(data.images, dtype=np.float64) / 16.0,
            np.asarray(data.target, dtype=np.int64))


def _digits_classes_tensor(classes: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Padded images per class ``(C, max_count, 64)`` and counts ``(C,)``."""
    images, labels = _digits_array()
    per_class = []
    for cid in classes:
        digit, rot = divmod(cid, 4)
        imgs = np.rot90(images[labels == digit], k=rot, axes=(1, 2))
        per_class.append(np.ascontiguousarray(imgs).reshape(len(imgs), 64))
    counts = np.array([len(p) for p in per_class])
    out = np.zeros((len(classes), int(counts.max()), 64))
    for i, p in enumerate(per_class):
        out[i, : len(p)] = p
    return torch.from_numpy(out), torch.from_numpy(counts)


@dataclass(frozen=True)
class DigitsFewShot:
    """N-way K-shot episodes from scikit-learn's 8 × 8 digits with rotated classes.

    Each digit c rotated by r·90° (r = 0..3) is class ``4c + r`` (40 classes, as rotated
    Omniglot characters are new classes). ``split="train"`` draws from digits 0–4 (20
    classes), ``"test"`` from digits 5–9 (20 classes): the splits share no class (and no
    image). An episode picks N classes, assigns them labels 0..N−1 in random order, and K
    support + ``n_query`` query images per class (without replacement). Inputs are the
    flattened images ``(T, N·K, 64)`` with pixel values in [0, 1]; targets one-hot
    ``(T, N·K, N)``; ``W_t`` the episode's class ids ``(T, N)`` (as the family's dtype).
    The data come from a file inside scikit-learn: nothing is downloaded.

    Note: rotations make some test classes look alike (a 6 rotated by 180° resembles a 9).

    References: Finn et al. (2017), §5.2; Arnold et al. (2021), §5.
    """

    split: Literal["train", "test"] = "train"
    n_way: int = 5
    k_shot: int = 1
    n_query: int = 15
    dtype: torch.dtype = torch.float64
    device: torch.device | str = "cpu"
    _images: Tensor = field(init=False, repr=False)
    _counts: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        classes = digits_classes(self.split)
        for name in ("n_way", "k_shot", "n_query"):
            object.__setattr__(self, name, _checks.positive_int(name, getattr(self, name)))
        if self.n_way > len(classes):
            raise InvalidArgumentError(
                f"n_way must be ≤ {len(classes)} (classes in the {self.split} split), "
                f"got {self.n_way}")
        imgs, counts = _digits_classes_tensor(classes)
        need = self.k_shot + self.n_query
        if need > int(counts.min()):
            raise InvalidArgumentError(
                f"k_shot + n_query = {need} exceeds the smallest class ({int(counts.min())} "
                f"images) of the {self.split} split")
        object.__setattr__(self, "_images", imgs.to(dtype=self.dtype, device=self.device))
        object.__setattr__(self, "_counts", counts.to(device=self.device))

    @property
    def classes(self) -> tuple[int, ...]:
        """Class ids (``4·digit + rotation``) of this split."""
        return digits_classes(self.split)

    @property
    def d(self) -> int:
        """Input dimension: 64 (8 × 8 pixel images)."""
        return 64

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
           ) -> DigitsFewShot:
        """The same family with its tensors on ``device`` and/or in ``dtype``."""
        return DigitsFewShot(self.split, self.n_way, self.k_shot, self.n_query,
                             dtype or self.dtype, device or self.device)

    @property
    def loss_fn(self) -> Callable[[Tensor, Tensor], Tensor]:
        """:func:`cross_entropy_loss`: ``−(1/n) Σ_i Σ_c y_ic log softmax(f_i)_c``."""
        return cross_entropy_loss

    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        """``T`` episodes: X ``(T, N·K, 64)``, Y ``(T, N·K, N)`` one-hot, Xq/Yq likewise with
        ``N·n_query`` rows, W_t ``(T, N)`` class ids."""
        T = _checks.positive_int("num_tasks", num_tasks)
        N, K, Q = self.n_way, self.k_shot, self.n_query
        C, M = self._images.shape[0], self._images.shape[1]
        dev = self._images.device
        # N distinct classes per episode, in random label order
        cls = torch.rand(T, C, generator=generator, device=dev).argsort(-1)[:, :N]  # (T, N)
        # K + Q distinct images per chosen class (positions beyond the class count excluded)
        keys = torch.rand(T, N, M, generator=generator, device=dev)
        valid = torch.arange(M, device=dev) < self._counts[cls].unsqueeze(-1)
        keys = torch.where(valid, keys, torch.full_like(keys, 2.0))
        idx = keys.argsort(-1)[..., : K + Q]  # (T, N, K+Q)
        imgs = self._images[cls.unsqueeze(-1), idx]  # (T, N, K+Q, 64)
        onehot = torch.eye(N, dtype=self.dtype, device=dev)

        def pack(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
            X = x.reshape(T, N * k, 64)
            Y = onehot.repeat_interleave(k, dim=0).expand(T, N * k, N)
            return X, Y

        X, Y = pack(imgs[:, :, :K], K)
        Xq, Yq = pack(imgs[:, :, K:], Q)
        ids = torch.as_tensor(self.classes, device=dev)[cls].to(self.dtype)
        return TaskBatch(X, Y.contiguous(), Xq, Yq.contiguous(), ids)

    def query_loss(self, model: nn.Module, params: Params, Xq: Tensor | None,
                   Yq: Tensor | None, W_t: Tensor) -> Tensor:
        """Softmax cross-entropy on the query set."""
        return _query(model, params, Xq, Yq, cross_entropy_loss, "DigitsFewShot")

    def query_accuracy(self, model: nn.Module, params: Params, Xq: Tensor | None,
                       Yq: Tensor | None, W_t: Tensor) -> Tensor:
        """Accuracy on the query set."""
        return _query(model, params, Xq, Yq, classification_accuracy, "DigitsFewShot")
