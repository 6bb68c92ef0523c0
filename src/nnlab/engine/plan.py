"""``plan_run``: the one place that decides which path a run takes, and why.

A run's path: the backend (torch or the from-scratch NumPy MLP), whether seeds
train stacked as one model, the training step (autograd, a stack's step, the
hand-derived MLP step), bf16 autocast and channels_last, torch.compile, DDP.
Each choice is made here from the config (and the device and data shape) and
recorded in ``summary.json`` under ``plan`` with its reason; combinations that
cannot work are refused here with one line, before any run folder is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nnlab.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from nnlab.config import Config

# The hand-derived step's activations (engine/manual_step.py has their derivatives).
MANUAL_STEP_ACTIVATIONS = ("sigmoid", "tanh", "relu", "gelu")
IMAGE_DATASETS = ("cifar10", "imagefolder")


def stack_refusal(cfg: Config) -> str | None:
    """Why runs of ``cfg`` (differing only in seed) cannot train as one stack, or None.

    Decided from the config alone, so that sweeps can group runs before loading
    any data. A stack is plain MLPs on whole float tensors, trained eagerly on
    the CPU; the data check (``stack_data_refusal``) comes when the data is loaded.
    """
    t, m = cfg.train, cfg.model
    if ":" in m.name:
        return "a user's model (model.name = FILE.py:Class) trains one seed at a time"
    if m.modules:
        return "a user's NumPy modules (model.modules) train one network at a time"
    if cfg.data.name in IMAGE_DATASETS or cfg.data.augment:
        return "image data is normalised and augmented per batch"
    if m.name != "mlp":
        return f"only MLPs stack, not {m.name}"
    if m.dropout or m.batchnorm:
        return "dropout and BatchNorm draw or pool across the batch"
    if t.patience or t.target_acc:
        return "members cannot stop early one by one"
    if t.tensorboard or t.ema or t.init_from:
        return "train.tensorboard, train.ema and train.init_from are for lone runs"
    if m.backend == "numpy":
        return None  # the NumPy MLP stacks in its own loop (numpy_mlp/fit.py)
    if t.clip_norm or t.amp == "on" or t.compile or t.deterministic:
        return "clipping (a global norm), amp, compile and deterministic mode are for lone runs"
    from nnlab.engine.setup import select_device

    if select_device(t.device).type != "cpu":
        return "stacks train on the CPU (on a GPU one run is already fast)"
    return None


def stack_key(cfg: Config) -> str | None:
    """Runs with equal keys may share a stack (equal configs but for ``train.seed`` and
    ``[data]``); None: this run trains alone."""
    if stack_refusal(cfg) is not None:
        return None
    rest = {k: v for k, v in cfg.to_dict().items() if k != "data"}
    return repr({**rest, "train": {**rest["train"], "seed": None}})


def manual_step_refusal(cfg: Config, amp: bool) -> str | None:
    """Why this run cannot use the hand-derived step, or None if it can."""
    from nnlab.engine import distributed

    m, t = cfg.model, cfg.train
    if ":" in m.name:
        return "it is written for nnlab's own MLP, not a user's model"
    if m.name != "mlp" or m.backend != "torch":
        return f"it is written for the torch MLP, not model {m.name!r} (backend {m.backend})"
    if m.batchnorm or m.dropout:
        return "it has no BatchNorm or dropout (set model.batchnorm=false, model.dropout=0)"
    if m.activation not in MANUAL_STEP_ACTIVATIONS:
        return f"it has no derivative for activation {m.activation!r}"
    if amp:
        return "it runs in full precision (set train.amp=off)"
    if t.compile:
        return "torch.compile needs autograd's graph (set train.compile=false)"
    if t.ema:
        return "weight averaging follows the autograd step (set train.ema=0)"
    if distributed.is_distributed():
        return "DDP averages gradients through autograd hooks (train in one process)"
    return None


@dataclass
class RunPlan:
    """The path of one run (or one stack of runs); ``describe()`` goes into summary.json."""

    cfg: Config
    device: torch.device
    members: int = 1  # networks trained at once: S for a stack of seeds
    step: str = "autograd"  # autograd | stack | manual
    amp: bool = False
    channels_last: bool = False
    world_size: int = 1
    reasons: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.cfg.model.backend,
            "step": self.step,
            "members": self.members,
            "amp_bf16": self.amp,
            "channels_last": self.channels_last,
            "compile": self.cfg.train.compile,
            "world_size": self.world_size,
            "why": dict(self.reasons),
        }

    def make_step(self, model, optimizer, train_loader):
        """``(step, compile_seconds)``: the step ``train_one_epoch`` runs (``engine/steps.py``)."""
        from nnlab.engine import distributed
        from nnlab.engine.steps import AutogradStep, StackStep

        t = self.cfg.train
        if self.step == "manual":
            from nnlab.engine.manual_step import ManualMLPStep

            step = ManualMLPStep(
                model,
                optimizer,
                self.cfg.model.activation,
                label_smoothing=t.label_smoothing,
                clip_norm=t.clip_norm,
            )
            return step, None
        # Under torchrun, train through DDP (it averages gradients over ranks).
        train_model, compile_seconds = distributed.wrap(model, self.device), None
        if t.compile:  # compiled once here, on throw-away passes: train_seconds holds no compile
            from nnlab.engine import compile as compiling

            train_model, compile_seconds = compiling.compile_and_warm_up(
                train_model,
                model,
                compiling.warm_up_batches(train_loader),
                mode=t.compile_mode,
                amp=self.amp,
                label_smoothing=t.label_smoothing,
            )
        kind = StackStep if self.step == "stack" else AutogradStep
        options = {"amp": self.amp, "label_smoothing": t.label_smoothing, "clip_norm": t.clip_norm}
        return kind(model, train_model, optimizer, **options), compile_seconds


def plan_run(
    cfg: Config, device: torch.device, input_shape: tuple[int, ...], *, members: int = 1
) -> RunPlan:
    """The path a torch run takes on ``device`` for examples of ``input_shape``.

    Raises a one-line ConfigError for what cannot work: a forced hand-derived
    step the run does not qualify for, compile without a backend, CUDA graphs
    off CUDA, test-time augmentation of non-images, a stack of what cannot stack.
    """
    from nnlab.engine import distributed
    from nnlab.engine.setup import speed_policy

    t = cfg.train
    amp, channels_last, why = speed_policy(cfg, device, input_shape)
    plan = RunPlan(cfg, device, members, amp=amp, channels_last=channels_last)
    plan.world_size = distributed.world_size()
    plan.reasons["amp"] = why
    if t.tta and len(input_shape) != 3:
        raise ConfigError(
            f"train.tta: test-time augmentation mirrors and shifts images; {cfg.data.name} has none (set train.tta=0)"
        )
    if members > 1:
        refusal = stack_refusal(cfg)
        if refusal is not None:
            raise ConfigError(f"train: these runs cannot train as one stack: {refusal}")
        plan.step, plan.reasons["step"] = "stack", f"{members} seeds of one setting, as one model"
        return plan
    refusal = manual_step_refusal(cfg, amp)
    if t.manual_step == "on" and refusal is not None:
        raise ConfigError(
            f"train.manual_step: the hand-derived step cannot train this run: {refusal}; use auto or off"
        )
    if t.manual_step != "off" and refusal is None:
        plan.step, plan.reasons["step"] = "manual", "a small plain MLP: hand-derived gradients"
    else:
        plan.reasons["step"] = (
            "train.manual_step=off" if refusal is None else f"autograd: {refusal}"
        )
    if t.compile:
        _check_compile(cfg, device)
    return plan


def _check_compile(cfg: Config, device: torch.device) -> None:
    from nnlab.engine.compile import compile_unavailable

    if cfg.train.compile_mode == "reduce-overhead" and device.type != "cuda":
        raise ConfigError(
            f"train.compile_mode: reduce-overhead records CUDA graphs and needs a CUDA device, not {device.type}; use default"
        )
    reason = compile_unavailable(device)
    if reason is not None:
        raise ConfigError(
            f"train.compile: torch.compile is unavailable here: {reason}; set train.compile=false"
        )
