"""cnn-fast on the CPU at tiny sizes: the whitening layer comes from data and stays frozen,
test-time augmentation averages the views it says, the triangle schedule, and the preset trains.
"""

from __future__ import annotations

import pytest
import torch

from nnlab.config import load_config
from nnlab.data import DataBundle
from nnlab.data.augment import ImageTransform, channel_stats
from nnlab.data.loader import TensorLoader
from nnlab.engine.compile import compile_unavailable
from nnlab.engine.loop import fit, infer
from nnlab.engine.optim import build_scheduler
from nnlab.engine.setup import seed_everything
from nnlab.engine.tta import shift, tta_logits
from nnlab.errors import ConfigError
from nnlab.models import build_model
from nnlab.models.fast_cnn import FastCNN, PatchWhitening

# cnn-fast's recipe at a size the CPU trains in seconds: 12x12 images, two narrow groups.
TINY = {
    "model.widths": "8,16",
    "train.batch_size": 32,
    "train.epochs": 2,
    "train.eval_every": 1,
    "train.device": "cpu",
}


def tiny_images(n_train: int = 96, n_test: int = 48, size: int = 12) -> DataBundle:
    """Noisy uint8 images of 4 classes: one colour channel brighter (0, 1, 2) or a checkerboard (3)."""
    g = torch.Generator().manual_seed(0)
    checker = (
        (torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2
    ) * 100  # (size, size)

    def make(n):
        y = torch.arange(n) % 4
        x = torch.randint(0, 120, (n, 3, size, size), generator=g)
        for c in range(3):
            x[y == c, c] += 100
        x[y == 3] += checker
        return x.to(torch.uint8), y

    x_train, y_train = make(n_train)
    x_test, y_test = make(n_test)
    return DataBundle(
        x_train,
        y_train,
        x_test,
        y_test,
        n_classes=4,
        input_shape=(3, size, size),
        normalization=channel_stats(x_train),
    )


def test_whitening_decorrelates_patches():
    """After init_from_data the 2x2 patches of the sample come out with (near) identity covariance."""
    torch.manual_seed(0)
    mix = torch.randn(3, 3)
    x = torch.einsum("dc,nchw->ndhw", mix, torch.randn(256, 3, 8, 8))  # correlated channels
    x = x + 0.5 * x.roll(1, dims=3)  # and correlated neighbours
    layer = PatchWhitening(3, kernel_size=2, eps=1e-6)
    before = layer.weight.clone()
    layer.init_from_data(x)
    assert not torch.allclose(layer.weight, before)
    with torch.no_grad():
        out = layer(x)[:, :12]  # (N, 12, 7, 7): the first half; the second is its negative
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    assert flat.mean(0).abs().max() < 1e-4  # the bias centres the outputs
    cov = flat.T @ flat / len(flat)
    assert torch.allclose(cov, torch.eye(12, dtype=torch.float64), atol=1e-2)
    assert torch.allclose(layer(x)[:, 12:], -layer(x)[:, :12])  # the negated filters, centred too


def test_fit_computes_whitening_from_training_images_and_freezes_it():
    cfg = load_config(
        "cnn-fast", {**TINY, "train.ema": 0.0, "train.lookahead": False, "train.tta": 0}
    )
    data = tiny_images()
    seed_everything(0)
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    assert "whiten.weight" in model.state_dict()  # a buffer: checkpoints carry it ...
    # ... and the optimizer never sees it
    assert all(n != "whiten.weight" for n, _ in model.named_parameters())
    expected = PatchWhitening(3)
    mean, std = data.normalization
    expected.init_from_data(ImageTransform(mean, std)(data.x_train))
    fit(cfg, model, data, torch.device("cpu"), progress="off")
    # from the data, unchanged by training
    assert torch.allclose(model.whiten.weight, expected.weight, atol=1e-6)
    assert not torch.allclose(model.whiten.bias, expected.bias)  # the bias does train


def test_fast_cnn_shapes_and_widths():
    model = FastCNN((3, 32, 32), 10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    cfg = load_config("cnn-fast").model
    assert cfg.widths == ["64", "256", "256"]
    cfg.widths = ["64", "M", "128"]
    with pytest.raises(ConfigError, match="one width per conv group"):
        build_model(cfg, (3, 32, 32), 10)
    with pytest.raises(ConfigError, match="halve the image"):
        FastCNN((3, 8, 8), 10, [8, 8, 8, 8])


def test_residual_groups_of_the_cnn_preset():
    """``R512`` is a group of three convs with a skip over the last two (the ``cnn`` preset)."""
    from nnlab.config.limits import _layers
    from nnlab.models.fast_cnn import ResidualConvGroup

    cfg = load_config("cnn")
    assert cfg.model.name == "cnn-fast" and cfg.model.widths == ["R128", "R512", "R512"]
    model = build_model(cfg.model, (3, 32, 32), 10)
    groups = list(model.groups)
    assert all(isinstance(g, ResidualConvGroup) for g in groups)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 9  # 3 per group, plus the whitening (a functional conv, not counted)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # the memory estimate counts the trained weights the model really has (BN shifts and
    # biases aside; the whitening filters are a small frozen buffer)
    weights = sum(c.weight.numel() for c in convs) + 512 * 10
    assert _layers(cfg, (3, 32, 32), 10)[0] == weights

    # The skip: with the last conv of the body at zero, the body adds BN(0) + shift = 0,
    # so the group is its entry followed by one more activation.
    group = ResidualConvGroup(24, 16, "gelu", 0.4).eval()  # fresh running statistics: 0 and 1
    with torch.no_grad():
        group.body[3].weight.zero_()
        x = torch.randn(2, 24, 31, 31)
        entry = group.entry(x)
        assert torch.allclose(group(x), torch.nn.functional.gelu(entry), atol=1e-6)
        # a plain group of the same widths has one conv fewer and no skip
        plain = FastCNN((3, 32, 32), 10, [128, "R128"])
        assert sum(isinstance(m, torch.nn.Conv2d) for m in plain.groups[0].modules()) == 2

    cfg.model.widths = ["R128", "R0"]
    with pytest.raises(ConfigError, match="R512: a residual group"):
        build_model(cfg.model, (3, 32, 32), 10)
    cfg.model.widths = ["RR128"]
    with pytest.raises(ConfigError, match="one width per conv group"):
        build_model(cfg.model, (3, 32, 32), 10)


def test_activations_stay_bf16_under_autocast():
    """A float32 BatchNorm shift must not promote the activations after it to float32."""
    from nnlab.models.fast_cnn import ShiftBatchNorm

    model = build_model(load_config("cnn").model, (3, 32, 32), 10)
    seen = []
    for module in model.modules():
        if isinstance(module, ShiftBatchNorm | torch.nn.GELU):
            module.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 3, 32, 32))
    assert len(seen) == 9 + 10 and set(seen) == {torch.bfloat16}  # 9 BNs, 9 + 1 GELUs
    # in float32 the shift is added as it is: BN(x) + shift * shift_scale
    bn = ShiftBatchNorm(4).eval()
    with torch.no_grad():
        bn.shift.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
        x = torch.randn(3, 4, 5, 5)
        expected = x / (1 + bn.eps) ** 0.5 + (bn.shift * 8).view(1, -1, 1, 1)
        assert torch.allclose(bn(x), expected, atol=1e-6)


@pytest.mark.skipif(
    compile_unavailable(torch.device("cpu")) is not None,
    reason="torch.compile cannot run here (no C++ compiler?)",
)
def test_compiled_bf16_gradients_are_finite_and_match_eager():
    """torch.compile (inductor) under bf16 autocast: gradients as close to float32's as eager bf16's.

    With a global max pool by torch.amax, the compiled backward compared unrounded values
    against bf16-rounded maxima, found no match and divided by a zero count: cnn-fast with
    train.compile and bf16 turned NaN in its first epoch (on a CPU and on an H100).
    """
    import copy

    torch.manual_seed(0)
    x, y = torch.randn(64, 3, 16, 16), torch.arange(64) % 10
    reference = FastCNN((3, 16, 16), 10, [8, 16])
    reference.init_from_data(x)
    eager, compiled = copy.deepcopy(reference), copy.deepcopy(reference)
    for net, bf16 in ((reference, False), (eager, True), (torch.compile(compiled), True)):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(net(x).float(), y)
        loss.backward()
    params = zip(
        reference.named_parameters(),
        eager.parameters(),
        compiled.parameters(),
        strict=True,
    )
    for (name, ref), a, b in params:
        assert torch.isfinite(b.grad).all(), name
        # bf16 rounds differently inside fused kernels: not equal, but no further from
        # float32's gradient than eager bf16's is (twice its error, plus a little)
        eager_error = (a.grad - ref.grad).norm()
        assert (b.grad - ref.grad).norm() <= 2 * eager_error + 0.02 * ref.grad.norm(), name


def test_tta_equals_averaging_the_views_by_hand():
    torch.manual_seed(0)
    model = FastCNN((3, 12, 12), 4, [8, 16]).eval()
    x = torch.randn(5, 3, 12, 12)
    # moved down-right by one pixel
    assert torch.equal(shift(x, 1, 1)[:, :, 1:, 1:], x[:, :, :-1, :-1])
    assert torch.equal(shift(x, -1, -1)[:, :, :-1, :-1], x[:, :, 1:, 1:])
    with torch.no_grad():

        def both(v):
            return (model(v) + model(v.flip(3))) / 2

        by_hand_1 = both(x)
        by_hand_2 = 0.5 * both(x) + 0.25 * both(shift(x, 1, 1)) + 0.25 * both(shift(x, -1, -1))
        assert torch.allclose(tta_logits(model, x, 0), model(x))
        assert torch.allclose(tta_logits(model, x, 1), by_hand_1, atol=1e-6)
        assert torch.allclose(tta_logits(model, x, 2), by_hand_2, atol=1e-6)
    loader = TensorLoader(x, torch.zeros(5, dtype=torch.long), batch_size=2)
    logits, _ = infer(model, loader, tta=2)  # batch by batch, the same numbers
    assert torch.allclose(logits, by_hand_2, atol=1e-5)


def test_triangle_schedule():
    cfg = load_config("cnn-fast").schedule
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.5)
    sched, per_batch = build_scheduler(opt, cfg, epochs=10, steps_per_epoch=10)
    assert per_batch
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.2 * 1.5)
    assert max(lrs) == pytest.approx(1.5) and lrs.index(max(lrs)) == 23
    assert opt.param_groups[0]["lr"] == pytest.approx(0.105)  # after the last step
    assert all(a <= b for a, b in zip(lrs[:23], lrs[1:24], strict=True))


def test_preset_trains_end_to_end_on_tiny_images():
    """The whole recipe (whitening, Lookahead, TTA 2, triangle, label smoothing) runs and learns."""
    # Batch 16 instead of 1024: the learning rate scales down with it (1.5 diverges here).
    tiny = {"train.epochs": 4, "train.batch_size": 16, "optim.lr": 0.2, "schedule.min_lr": 0.01}
    cfg = load_config("cnn-fast", {**TINY, **tiny})
    data = tiny_images()
    seed_everything(0)
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    result = fit(cfg, model, data, torch.device("cpu"), progress="off")
    assert result.history[-1]["test_acc"] >= 0.9, result.history  # chance is 0.25
    assert result.compile_seconds is None and 0 < result.eval_seconds < result.train_seconds
