"""The speed options of fit on the CPU: weight averaging (EMA / Lookahead) resumes exactly,
train.compile trains exactly like eager and times its compile apart, and options that cannot
work here fail with one line before anything is written. GPU-only paths are skipped on the CPU.
"""

from __future__ import annotations

import pytest
import torch

import nnlab.engine.loop as train_module
from conftest import assert_one_line_error
from nnlab.config import load_config
from nnlab.data.loader import TensorLoader
from nnlab.engine import compile as speed
from nnlab.engine.ema import WeightAverage
from nnlab.engine.run import resume_training, run_training
from nnlab.errors import ConfigError
from nnlab.runs import load_checkpoint, read_json

# A small moons MLP with BatchNorm and dropout: buffers and random draws that must survive.
MOONS = {
    "train.epochs": 6,
    "train.eval_every": 1,
    "train.device": "cpu",
    "data.n_samples": 300,
    "model.batchnorm": True,
    "model.dropout": 0.1,
    "schedule.name": "cosine",
    "train.checkpoint_every_s": 0,  # a checkpoint at every evaluation: the crash test counts them
}
AVERAGE = {"train.ema": 0.9, "train.ema_every": 5, "train.lookahead": True}  # 8 steps an epoch


def _rows(run):
    """metrics.csv without the wall-clock column."""
    return [line.rsplit(",", 1)[0] for line in (run / "metrics.csv").read_text().splitlines()]


def _same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_weight_average_update_rule():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    avg = WeightAverage(model, decay=0.5, every=2, lookahead=True, total_steps=4)
    with torch.no_grad():
        model.weight.fill_(3.0)
    avg.update()  # step 1 of every 2: nothing yet
    assert torch.equal(avg.model.weight, torch.ones(1, 2))
    avg.update()  # step 2: d = 0.5 * (2/4)^3 = 1/16 -> 1/16 * 1 + 15/16 * 3
    assert torch.allclose(avg.model.weight, torch.full((1, 2), 3 - 2 / 16))
    # lookahead: the training weights jump to the average
    assert torch.equal(model.weight, avg.model.weight)
    assert not avg.model.weight.requires_grad


def test_ema_checkpoint_and_resume_are_exact(tmp_path, monkeypatch):
    """Killed after epoch 3 and resumed: the same metrics, average and training weights as one run."""
    cfg = load_config("moons", {**MOONS, **AVERAGE})
    reference = tmp_path / "ref"
    summary = run_training(cfg, reference, progress="off")
    state = load_checkpoint(reference / "checkpoints" / "last.pt")
    assert set(state["ema"]) == {"train_model", "steps", "updates"}
    assert (
        state["ema"]["steps"] == summary["steps"]
        and state["ema"]["updates"] == summary["steps"] // 5
    )
    # `model` holds the average (what was evaluated); the training weights moved on since (48 % 5 steps)
    assert not _same_tensors(state["model"], state["ema"]["train_model"])

    calls = {"n": 0}
    real_evaluate = train_module.evaluate

    def crash_on_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        return real_evaluate(*args, **kwargs)

    interrupted = tmp_path / "interrupted"
    with monkeypatch.context() as m:
        m.setattr(train_module, "evaluate", crash_on_fourth)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run_training(cfg, interrupted, progress="off")
    assert load_checkpoint(interrupted / "checkpoints" / "last.pt")["epoch"] == 3
    resumed = resume_training(interrupted, progress="off")
    assert _rows(interrupted) == _rows(reference)
    assert resumed["final_test_acc"] == summary["final_test_acc"]
    again = load_checkpoint(interrupted / "checkpoints" / "last.pt")
    assert _same_tensors(again["model"], state["model"])
    assert _same_tensors(again["ema"]["train_model"], state["ema"]["train_model"])


def test_compile_trains_exactly_like_eager_and_times_compile_apart(tmp_path, monkeypatch):
    """compile on (dynamo with its eager backend, to stay fast on the CPU) = compile off, bit for bit.

    The warm-up passes that compile touch BatchNorm buffers, gradients and the RNG;
    all are put back. compile off records compile_seconds = null.
    """
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, mode=None: real_compile(m, backend="eager"))
    off = run_training(load_config("moons", MOONS), tmp_path / "off", progress="off")
    on = run_training(
        load_config("moons", {**MOONS, "train.compile": True}), tmp_path / "on", progress="off"
    )
    assert (
        off["compile_seconds"] is None
        and read_json(tmp_path / "off" / "summary.json")["compile_seconds"] is None
    )
    assert on["compile_seconds"] > 0
    assert 0 < on["eval_seconds"] < on["train_seconds"]
    assert _rows(tmp_path / "on") == _rows(tmp_path / "off")
    a = load_checkpoint(tmp_path / "on" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "off" / "checkpoints" / "last.pt")["model"]
    assert _same_tensors(a, b)


def test_warm_up_batches_cover_every_batch_size():
    x, y = torch.randn(100, 2), torch.zeros(100, dtype=torch.long)
    sizes = [len(b[1]) for b in speed.warm_up_batches(TensorLoader(x, y, 32, shuffle=True))]
    assert sizes == [32, 4]
    assert [len(b[1]) for b in speed.warm_up_batches(TensorLoader(x, y, 50))] == [50]


def test_reduce_overhead_needs_cuda(cli, tmp_path):
    proc = cli(
        "train",
        "moons",
        "--device",
        "cpu",
        "--set",
        "train.compile=true",
        "--set",
        "train.compile_mode=reduce-overhead",
        "--out",
        str(tmp_path / "run"),
    )
    assert_one_line_error(proc, "train.compile_mode", "CUDA")
    assert not (tmp_path / "run").exists()
    proc = cli("train", "moons", "--set", "train.compile_mode=max-autotune")
    assert_one_line_error(proc, "train.compile_mode", "needs train.compile = true")


def test_compile_unavailable_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(speed.shutil, "which", lambda name: None)
    proc = cli(
        "train",
        "moons",
        "--device",
        "cpu",
        "--set",
        "train.compile=true",
        "--out",
        str(tmp_path / "run"),
    )
    assert_one_line_error(proc, "train.compile", "C++ compiler", "train.compile=false")
    assert not (tmp_path / "run").exists()


def test_compile_failure_inside_the_compiler_is_one_line(monkeypatch):
    def broken(m, mode=None):
        def fail(*a, **k):
            raise RuntimeError("backend exploded\nwith a long traceback")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    model = torch.nn.Linear(2, 2)
    batch = [(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(
        ConfigError,
        match=r"train.compile: torch.compile failed here \(RuntimeError: backend exploded\)",
    ):
        speed.compile_and_warm_up(model, model, batch)


def test_warm_up_passes_start_from_cleared_gradients(monkeypatch):
    """Each warm-up backward starts from no gradient, as a training step does.

    Under CUDA graphs (reduce-overhead: two passes per batch shape) a backward that
    accumulated into the previous pass's gradients read graph outputs a later replay had
    overwritten, and compile failed on the GPU. Here a pass that accumulated shows as a
    doubled gradient.
    """
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, mode=None: real_compile(m, backend="eager"))
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    seen = []
    model.weight.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.clone()))
    batch = [(torch.randn(8, 3), torch.arange(8) % 2)]
    speed.compile_and_warm_up(model, model, batch, mode="reduce-overhead")
    assert len(seen) == 2 and seen[0].abs().sum() > 0
    assert torch.allclose(seen[1], seen[0])  # not 2x: the second pass did not accumulate
    assert model.weight.grad is None


def test_tta_and_ema_options_are_checked(cli):
    assert_one_line_error(cli("train", "moons", "--set", "train.tta=1"), "train.tta", "images")
    assert_one_line_error(cli("train", "moons", "--set", "train.tta=3"), "train.tta", "0 (off), 1")
    assert_one_line_error(cli("train", "moons", "--set", "train.ema=1.0"), "train.ema", "[0, 1)")
    assert_one_line_error(
        cli("train", "moons", "--set", "train.lookahead=true"), "train.lookahead", "train.ema > 0"
    )


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU: CUDA graphs (train.compile_mode=reduce-overhead) run only there",
)
def test_cuda_graphs_train_the_report_cnn(tmp_path):
    """seed-cnn's layout at batch 32 through compile's reduce-overhead mode on a GPU (benchmarks/gpu.sh times it)."""
    from nnlab.engine.loop import fit
    from nnlab.engine.setup import seed_everything
    from nnlab.models import build_model
    from test_fast_cnn import tiny_images

    cfg = load_config(
        "seed-cnn",
        {
            "train.epochs": 2,
            "train.device": "cuda",
            "train.compile": True,
            "train.compile_mode": "reduce-overhead",
            "model.widths": "16,M,32,G",
        },
    )
    data = tiny_images(n_train=200)
    seed_everything(0)
    model = build_model(cfg.model, data.input_shape, data.n_classes).cuda()
    result = fit(cfg, model, data, torch.device("cuda"), progress="off")
    assert result.compile_seconds > 0 and all(
        torch.isfinite(torch.tensor(r["train_loss"])) for r in result.history
    )
