"""The NumPy MLP against PyTorch autograd in float64: every module, the whole MLP, every optimizer.

Shapes, scales and seeds are drawn by hypothesis; each module is tested alone
and stacked (a leading axis of S independent networks). Relative error < 1e-6.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nnlab.numpy_mlp import MLP, CrossEntropy, Linear, ReLU, Sigmoid, SoftMax, Tanh
from nnlab.numpy_mlp.optim import build_optimizer, clip_grad_norm, minibatches

TOL = 1e-6
SETTINGS = settings(max_examples=25, deadline=None)


def rel_err(a, b) -> float:
    """Relative error, with gradients below 1e-9 in norm compared absolutely (to 1e-15 at TOL):
    e.g. tanh'(15) = 1 - tanh(15)**2 ~ 2e-13 carries float64 cancellation error of ~1e-16,
    which is a large *relative* error in a gradient that is zero for all purposes."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-9))


def t64(x: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


# (stack, batch, features): stack None is a lone network's (B, D) batch.
shapes = st.tuples(st.one_of(st.none(), st.integers(1, 3)), st.integers(1, 7), st.integers(1, 6))
seeds = st.integers(0, 2**32 - 1)
scales = st.sampled_from([0.1, 1.0, 4.0])


def _input(shape, seed, scale):
    stack, batch, dim = shape
    rng = np.random.default_rng(seed)
    lead = () if stack is None else (stack,)
    return rng, rng.normal(size=(*lead, batch, dim)) * scale


@SETTINGS
@given(shape=shapes, out=st.integers(1, 5), seed=seeds, scale=scales)
def test_linear_matches_autograd(shape, out, seed, scale):
    rng, x = _input(shape, seed, scale)
    layer = Linear(shape[2], out, stack=shape[0], rng=rng)
    dout = rng.normal(size=(*x.shape[:-1], out))
    y = layer.forward(x)
    dx = layer.backward(dout)
    xt, wt, bt = t64(x, True), t64(layer.W, True), t64(layer.b, True)
    yt = xt @ wt + bt.unsqueeze(-2)
    (yt * t64(dout)).sum().backward()
    assert rel_err(y, yt.detach()) < TOL
    for mine, theirs in ((dx, xt.grad), (layer.dW, wt.grad), (layer.db, bt.grad)):
        assert rel_err(mine, theirs) < TOL


@pytest.mark.parametrize(
    "module, reference",
    [
        (ReLU, torch.relu),
        (Sigmoid, torch.sigmoid),
        (Tanh, torch.tanh),
        (SoftMax, lambda x: torch.softmax(x, -1)),
    ],
    ids=["relu", "sigmoid", "tanh", "softmax"],
)
@SETTINGS
@given(shape=shapes, seed=seeds, scale=st.sampled_from([0.1, 1.0, 4.0, 50.0]))
def test_elementwise_and_softmax_match_autograd(module, reference, shape, seed, scale):
    rng, x = _input(shape, seed, scale)
    dout = rng.normal(size=x.shape)
    m = module()
    y = m.forward(x)
    dx = m.backward(dout)
    xt = t64(x, True)
    yt = reference(xt)
    (yt * t64(dout)).sum().backward()
    assert np.isfinite(y).all()  # large inputs: no overflow (softmax subtracts the row max)
    assert rel_err(y, yt.detach()) < TOL
    assert rel_err(dx, xt.grad) < TOL


@SETTINGS
@given(
    shape=shapes,
    seed=seeds,
    scale=st.sampled_from([0.1, 1.0, 4.0, 100.0]),
    smoothing=st.sampled_from([0.0, 0.1]),
)
def test_cross_entropy_matches_torch(shape, seed, scale, smoothing):
    stack, batch, n_classes = shape
    rng, logits = _input((stack, batch, max(n_classes, 2)), seed, scale)
    labels = rng.integers(0, logits.shape[-1], size=logits.shape[:-1])
    ce = CrossEntropy(smoothing)
    loss = ce.forward(logits, labels)
    grad = ce.backward()
    lt = t64(logits, True)
    per = F.cross_entropy(
        lt.reshape(-1, lt.shape[-1]),
        torch.from_numpy(labels.reshape(-1)),
        reduction="none",
        label_smoothing=smoothing,
    )
    ref = per.view(labels.shape).mean(-1)  # one mean loss per stacked network
    ref.sum().backward()
    assert np.isfinite(loss).all() and loss.shape == labels.shape[:-1]
    assert rel_err(loss, ref.detach()) < TOL
    assert rel_err(grad, lt.grad) < TOL


@SETTINGS
@given(
    stack=st.one_of(st.none(), st.integers(1, 3)),
    batch=st.integers(1, 6),
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    n_inputs=st.integers(1, 4),
    n_classes=st.integers(2, 4),
    activation=st.sampled_from(["relu", "sigmoid", "tanh"]),
    seed=seeds,
)
def test_whole_mlp_gradients_match_autograd(
    stack, batch, sizes, n_inputs, n_classes, activation, seed
):
    rng = np.random.default_rng(seed)
    model = MLP(n_inputs, sizes, n_classes, activation=activation, stack=stack, rng=rng)
    lead = () if stack is None else (stack,)
    x = rng.normal(size=(*lead, batch, n_inputs))
    labels = rng.integers(0, n_classes, size=(*lead, batch))
    ce = CrossEntropy()
    loss = ce.forward(model.forward(x), labels)
    dx = model.backward(ce.backward())

    act = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[activation]
    weights = [(t64(lin.W, True), t64(lin.b, True)) for lin in model.linears]
    h = xt = t64(x, True)
    for i, (w, b) in enumerate(weights):
        h = h @ w + b.unsqueeze(-2)
        h = act(h) if i < len(weights) - 1 else h
    ref = (
        F.cross_entropy(
            h.reshape(-1, n_classes), torch.from_numpy(labels.reshape(-1)), reduction="none"
        )
        .view(labels.shape)
        .mean(-1)
    )
    ref.sum().backward()
    assert rel_err(loss, ref.detach()) < TOL
    assert rel_err(dx, xt.grad) < TOL
    flat = torch.cat(
        [torch.cat([w.grad.flatten(len(lead)), b.grad.flatten(len(lead))], -1) for w, b in weights],
        -1,
    )
    assert rel_err(model.grads, flat) < TOL  # the flat gradient buffer, in parameter order


def test_mlp_is_the_torch_backends_architecture():
    """Same layers and parameter count as nnlab.models.mlp.MLP: with its weights, the same logits."""
    from nnlab.models.mlp import MLP as TorchMLP

    torch.manual_seed(0)
    net = TorchMLP(2, [20, 7], 3, activation="tanh").double()
    ours = MLP(2, [20, 7], 3, activation="tanh")
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    ours.load_state_dict(
        {
            k: v
            for i, lin in enumerate(linears)
            for k, v in (
                (f"W{i}", lin.weight.detach().numpy().T),
                (f"b{i}", lin.bias.detach().numpy()),
            )
        }
    )
    assert ours.n_params == sum(p.numel() for p in net.parameters())
    x = np.random.default_rng(0).normal(size=(16, 2))
    assert rel_err(ours.forward(x), net(torch.from_numpy(x)).detach()) < TOL


def test_initialisation_is_torch_linear_default():
    """W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch.nn.Linear: the same scheme in both backends."""
    model = MLP(50, [400], 2, rng=0)
    w, b = model.linears[0].W, model.linears[0].b
    bound = 1 / np.sqrt(50)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.01 * bound  # the std of U(-a, a) is a / sqrt(3)
    torch.manual_seed(0)
    tw = torch.nn.Linear(50, 400).weight.detach().numpy()
    assert abs(w.std() - tw.std()) < 0.02 * bound


def test_stacked_networks_start_like_lone_ones_and_stay_independent():
    rngs = [np.random.default_rng(s) for s in (3, 4)]
    stacked = MLP(2, [5], 2, stack=2, rng=rngs)
    lone = MLP(2, [5], 2, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(stacked.params[1], lone.params)
    x = np.random.default_rng(0).normal(size=(2, 8, 2))
    x[0, 0, 0] = np.nan  # poison network 0's batch: network 1 must not notice
    np.testing.assert_allclose(stacked.forward(x)[1], lone.forward(x[1]), rtol=1e-12)


OPTIMIZERS = [
    ("sgd", {"momentum": 0.0}, {}),
    ("sgd", {"momentum": 0.9, "weight_decay": 1e-2}, {"momentum": 0.9, "weight_decay": 1e-2}),
    ("sgd", {"momentum": 0.9, "nesterov": True}, {"momentum": 0.9, "nesterov": True}),
    ("adam", {"weight_decay": 1e-2}, {"weight_decay": 1e-2}),
    ("adamw", {"weight_decay": 1e-1}, {"weight_decay": 1e-1}),
    ("rmsprop", {"momentum": 0.5, "alpha": 0.9}, {"momentum": 0.5, "alpha": 0.9}),
]


@pytest.mark.parametrize(
    "name, ours, theirs", OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(OPTIMIZERS)]
)
def test_optimizers_follow_torch(name, ours, theirs):
    rng = np.random.default_rng(0)
    params = rng.normal(size=(3, 7))  # 3 stacked networks: the update is elementwise
    grads = np.zeros_like(params)
    p_t = torch.tensor(params.copy(), requires_grad=True)
    opt = build_optimizer(name, params, grads, lr=0.05, **ours)
    cls = {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "rmsprop": torch.optim.RMSprop,
    }[name]
    opt_t = cls([p_t], lr=0.05, foreach=False, **theirs)
    for _ in range(6):
        g = rng.normal(size=params.shape)
        grads[...] = g
        opt.step()
        p_t.grad = torch.tensor(g)
        opt_t.step()
    assert rel_err(params, p_t.detach()) < 1e-10


def test_clip_grad_norm_per_network_like_torch():
    grads = np.random.default_rng(0).normal(size=(2, 10)) * [[10.0], [0.01]]
    clipped = grads.copy()
    clip_grad_norm(clipped, 1.0)
    for s in range(2):
        t = torch.tensor(grads[s].copy(), requires_grad=True)
        t.grad = torch.tensor(grads[s].copy())
        torch.nn.utils.clip_grad_norm_([t], 1.0)
        assert rel_err(clipped[s], t.grad) < 1e-12


def test_three_forms_of_gradient_descent():
    rng = np.random.default_rng(0)
    per_sample = list(minibatches(10, 1, rng))
    mini = list(minibatches(10, 4, rng))
    full = list(minibatches(10, None, rng))
    assert len(per_sample) == 10 and all(len(b) == 1 for b in per_sample)
    assert [len(b) for b in mini] == [4, 4, 2]
    assert len(full) == 1 and sorted(full[0]) == list(range(10))
    for batches in (per_sample, mini):  # every example once per epoch
        assert sorted(np.concatenate(batches)) == list(range(10))


def test_package_does_not_import_torch():
    code = "import sys, nnlab.numpy_mlp, nnlab.numpy_mlp.mlp, nnlab.numpy_mlp.fit; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
