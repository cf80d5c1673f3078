"""The nonlinear task families (LogR, sine, digits few-shot) and the small models."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from maml_depth.errors import InvalidArgumentError
from maml_depth.numerics import (
    DIGITS_TEST_CLASSES,
    DIGITS_TRAIN_CLASSES,
    MLP,
    ConvNet,
    DeepLinear,
    DigitsFewShot,
    InnerConfig,
    LinNetMLP,
    LogisticTasks,
    OuterConfig,
    SineTasks,
    layer_groups,
    meta_train,
    post_adaptation_losses,
)
from maml_depth.numerics import task_families as tf
from tests.helpers import assert_close


def _same_batch(a, b):
    for x, y in zip((a.X, a.Y, a.Xq, a.Yq, a.W_t), (b.X, b.Y, b.Xq, b.Yq, b.W_t), strict=True):
        assert torch.equal(x, y)


# -- LogR ------------------------------------------------------------------------------------
@given(d=st.integers(1, 6), n=st.integers(1, 8), nq=st.integers(1, 8), T=st.integers(1, 4),
       seed=st.integers(0, 2**31 - 1))
def test_logistic_tasks_shapes_labels_and_determinism(d, n, nq, T, seed):
    fam = LogisticTasks(d, n_support=n, n_query=nq, tau=1.0)
    b = fam.sample(T, torch.Generator().manual_seed(seed))
    assert b.X.shape == (T, n, d) and b.Y.shape == (T, n, 1)
    assert b.Xq.shape == (T, nq, d) and b.Yq.shape == (T, nq, 1) and b.W_t.shape == (T, 1, d)
    # hard labels: y = 1[w_tᵀx > 0], the teacher classifies its own data perfectly
    assert torch.equal(b.Y, (b.X @ b.W_t.mT > 0).to(b.Y.dtype))
    _same_batch(b, fam.sample(T, torch.Generator().manual_seed(seed)))


def test_logistic_loss_and_accuracy_of_the_teacher():
    fam = LogisticTasks(4, n_support=5, n_query=200, tau=1.0)
    b = fam.sample(1, torch.Generator().manual_seed(0))
    model = DeepLinear((4, 1))
    teacher = {"layers.0.weight": 50.0 * b.W_t[0]}
    assert float(fam.query_accuracy(model, teacher, b.Xq[0], b.Yq[0], b.W_t[0])) == 1.0
    assert float(fam.query_loss(model, teacher, b.Xq[0], b.Yq[0], b.W_t[0])) < 0.1
    zero = {"layers.0.weight": torch.zeros(1, 4, dtype=torch.float64)}
    assert_close(fam.query_loss(model, zero, b.Xq[0], b.Yq[0], b.W_t[0]), np.log(2.0))


def test_logr_and_logr_linnet_meta_train_on_the_same_tasks():
    """LogR (one linear layer) vs LogR+LinNet (three, same capacity): both run."""
    fam = LogisticTasks(3, n_support=6, n_query=20, tau=1.0,
                        W_bar=torch.tensor([[2.0, -1.0, 0.5]]))
    for dims in ((3, 1), (3, 3, 3, 1)):
        model = DeepLinear(dims, generator=torch.Generator().manual_seed(0))
        r = meta_train(model, fam, InnerConfig(alpha=0.5), OuterConfig(40, 16, 0.02))
        assert r.diverged is None and r.history.post_loss[-1] < r.history.post_loss[0]


# -- sine ------------------------------------------------------------------------------------
@given(K=st.integers(1, 10), nq=st.integers(1, 10), T=st.integers(1, 5),
       seed=st.integers(0, 2**31 - 1))
def test_sine_tasks_follow_the_definition(K, nq, T, seed):
    fam = SineTasks(n_support=K, n_query=nq)
    b = fam.sample(T, torch.Generator().manual_seed(seed))
    assert b.X.shape == (T, K, 1) and b.Y.shape == (T, K, 1) and b.W_t.shape == (T, 2)
    assert b.Xq.shape == (T, nq, 1)
    A, ph = b.W_t[:, 0], b.W_t[:, 1]
    assert ((A >= 0.1) & (A <= 5.0)).all() and ((ph >= 0) & (ph <= np.pi)).all()
    assert ((b.X >= -5) & (b.X <= 5)).all()
    assert_close(b.Y, A[:, None, None] * torch.sin(b.X - ph[:, None, None]))
    assert_close(b.Yq, A[:, None, None] * torch.sin(b.Xq - ph[:, None, None]))
    _same_batch(b, fam.sample(T, torch.Generator().manual_seed(seed)))


def test_sine_rejects_bad_ranges():
    with pytest.raises(InvalidArgumentError, match="amplitude"):
        SineTasks(amplitude=(5.0, 0.1))
    with pytest.raises(InvalidArgumentError, match="n_support"):
        SineTasks(n_support=0)


# -- digits ----------------------------------------------------------------------------------
def test_digits_class_splits_are_disjoint_and_cover_40_classes():
    assert len(DIGITS_TRAIN_CLASSES) == len(DIGITS_TEST_CLASSES) == 20
    assert not set(DIGITS_TRAIN_CLASSES) & set(DIGITS_TEST_CLASSES)
    assert set(DIGITS_TRAIN_CLASSES) | set(DIGITS_TEST_CLASSES) == set(range(40))
    assert {c // 4 for c in DIGITS_TRAIN_CLASSES} == {0, 1, 2, 3, 4}
    assert {c // 4 for c in DIGITS_TEST_CLASSES} == {5, 6, 7, 8, 9}


@given(split=st.sampled_from(["train", "test"]), N=st.integers(2, 6), K=st.integers(1, 5),
       Q=st.integers(1, 5), T=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_digits_episodes(split, N, K, Q, T, seed):
    fam = DigitsFewShot(split, n_way=N, k_shot=K, n_query=Q)
    b = fam.sample(T, torch.Generator().manual_seed(seed))
    assert b.X.shape == (T, N * K, 64) and b.Y.shape == (T, N * K, N)
    assert b.Xq.shape == (T, N * Q, 64) and b.Yq.shape == (T, N * Q, N)
    assert b.W_t.shape == (T, N)
    assert ((b.X >= 0) & (b.X <= 1)).all()
    # one-hot targets, K (resp. Q) per label
    assert torch.equal(b.Y.sum(-1), torch.ones(T, N * K, dtype=b.Y.dtype))
    assert torch.equal(b.Y.sum(1), torch.full((T, N), float(K), dtype=b.Y.dtype))
    assert torch.equal(b.Yq.sum(1), torch.full((T, N), float(Q), dtype=b.Y.dtype))
    images, labels = tf._digits_array()
    for t in range(T):
        ids = [int(c) for c in b.W_t[t]]
        assert len(set(ids)) == N and set(ids) <= set(fam.classes)
        both = torch.cat([b.X[t], b.Xq[t]])
        assert len({tuple(r.tolist()) for r in both}) == N * (K + Q)  # no image twice
        # each support image is its class's digit rotated by the class's angle
        lab = b.Y[t].argmax(-1)
        for i in range(N * K):
            digit, rot = divmod(ids[int(lab[i])], 4)
            src = np.rot90(images[labels == digit], k=rot, axes=(1, 2)).reshape(-1, 64)
            assert np.abs(src - b.X[t, i].numpy()).sum(1).min() == 0
    _same_batch(b, fam.sample(T, torch.Generator().manual_seed(seed)))


def test_digits_need_no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    tf._digits_array.cache_clear()
    fam = DigitsFewShot("test", n_way=5, k_shot=1)
    assert fam.sample(2, torch.Generator().manual_seed(0)).X.shape == (2, 5, 64)


def test_digits_errors_name_the_field():
    with pytest.raises(InvalidArgumentError, match="split"):
        DigitsFewShot("valid")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="n_way"):
        DigitsFewShot(n_way=21)
    with pytest.raises(InvalidArgumentError, match="k_shot"):
        DigitsFewShot(k_shot=100, n_query=100)


# -- models ----------------------------------------------------------------------------------
def test_linnet_mlp_has_the_capacity_of_the_plain_mlp():
    """Collapsing the extra linear layers into the output layer gives the same function."""
    g = torch.Generator().manual_seed(0)
    deep = LinNetMLP((1, 8, 8, 1), "relu", extra_linear=2, generator=g)
    flat = MLP((1, 8, 8, 1), "relu", generator=g)
    lin = [m for m in deep.net if isinstance(m, torch.nn.Linear)]
    assert len(layer_groups(deep)) == 5 and deep.depth == 5
    with torch.no_grad():
        for a, b in zip([m for m in flat.net if isinstance(m, torch.nn.Linear)][:2], lin[:2],
                        strict=True):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
        W, c = lin[4].weight, lin[4].bias
        for m in (lin[3], lin[2]):
            c = W @ m.bias + c
            W = W @ m.weight
        flat.net[-1].weight.copy_(W)
        flat.net[-1].bias.copy_(c)
    x = torch.linspace(-5, 5, 11, dtype=torch.float64).reshape(-1, 1)
    assert_close(deep(x), flat(x))


def test_convnet_layers_and_shapes():
    model = ConvNet(5, (4, 4), extra_linear=2)
    groups = layer_groups(model)
    assert len(groups) == 5 == model.depth
    assert groups[0] == ["convs.0.weight", "convs.0.bias"] and groups[-1][0] == "head.weight"
    assert model(torch.rand(3, 64, dtype=torch.float64)).shape == (3, 5)
    with pytest.raises(InvalidArgumentError, match="divisible"):
        ConvNet(5, (4, 4, 4, 4), image=8)


@pytest.mark.parametrize("opt", ["maml", "meta-sgd", "meta-curvature", "kfo"])
def test_a_few_meta_steps_on_digits_and_sine_run_with_every_optimizer(opt):
    g = torch.Generator().manual_seed(0)
    digits = DigitsFewShot("train", n_way=3, k_shot=1, n_query=2, dtype=torch.float32)
    cnn = ConvNet(3, (4, 4), generator=g, dtype=torch.float32)
    r = meta_train(cnn, digits, InnerConfig(alpha=0.3, preconditioner=opt),
                   OuterConfig(3, 4, 1e-3))
    assert r.diverged is None and r.steps_done == 3
    sine = SineTasks(5, 5)
    mlp = LinNetMLP((1, 8, 8, 1), extra_linear=1, generator=g)
    r = meta_train(mlp, sine, InnerConfig(alpha=0.01, preconditioner=opt, steps=2),
                   OuterConfig(3, 4, 1e-3))
    assert r.diverged is None
    losses = post_adaptation_losses(mlp, r.params, sine.sample(2, g), sine,
                                    InnerConfig(alpha=0.01, preconditioner=opt),
                                    precond_state=r.precond_state)
    assert losses.shape == (2,) and torch.isfinite(losses).all()
