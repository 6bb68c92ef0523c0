"""Config validation: reject impossible values with one line naming the key.

``validate`` runs on every ``Config`` that ``load_config`` or ``Config.replace``
builds, so a bad value fails before anything is trained or written. The names a
key may take come from the registries that build them (datasets, models,
optimizers, schedules), read lazily here: their name tables import no torch, and
reading them at call time keeps the registries free to import the config.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from typing import Any

from nnlab.config.limits import check_limits
from nnlab.config.ranges import check_ranges
from nnlab.config.sections import SECTIONS
from nnlab.config.user_code import is_user_model, parse_user_model
from nnlab.errors import ConfigError

# A ``nnlab.config.Config``; not imported even for type checking: the package (config/__init__.py) imports this
# module, and the import graph stays free of cycles (tests/test_imports.py).
Config = Any

ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu")
BACKENDS = ("torch", "numpy")
AUGMENTS = ("crop", "translate", "flip", "cutout")  # image batch transforms, nnlab/data/augment.py
# model.widths tokens (nnlab/models/cnn.py): conv width, R residual, M/M3/A pool, G/GM global, F dense
_WIDTH_TOKEN = re.compile(r"R?[1-9]\d*|M3?|A|GM?|F[1-9]\d*")


def _utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (a non-UTF-8 file name decodes to lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _require(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: {allowed}, got {value!r}")


def _choice(key: str, value: str, choices: Iterable[str]) -> None:
    choices = list(choices)
    _require(value in choices, key, f"must be one of {', '.join(choices)}", value)


def validate(cfg: Config) -> None:
    """Reject impossible values with one line naming the key and what is allowed."""
    for section in SECTIONS:
        for key, value in dataclasses.asdict(getattr(cfg, section)).items():
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, float):
                    _require(math.isfinite(v), f"{section}.{key}", "must be a finite number", v)
    _check_data(cfg)
    _check_model(cfg)
    _check_optim(cfg)
    _check_train(cfg)
    check_ranges(cfg)  # seeds NumPy takes, stratified splits that work (config/ranges.py)
    check_limits(cfg)  # memory no machine has, NUL in a string (config/limits.py)


def _check_data(cfg: Config) -> None:
    from nnlab.data import dataset_names

    d = cfg.data
    _choice("data.name", d.name, dataset_names())
    _require(d.n_samples >= 10, "data.n_samples", "must be >= 10", d.n_samples)
    _require(d.noise >= 0, "data.noise", "must be >= 0", d.noise)
    _require(d.centers >= 2, "data.centers", "must be >= 2", d.centers)
    _require(d.cluster_std > 0, "data.cluster_std", "must be > 0", d.cluster_std)
    _require(
        0 < d.test_fraction < 1,
        "data.test_fraction",
        "must be between 0 and 1 (exclusive)",
        d.test_fraction,
    )
    _require(d.limit_train >= 0, "data.limit_train", "must be >= 0 (0 = all)", d.limit_train)
    _require(d.limit_test >= 0, "data.limit_test", "must be >= 0 (0 = all)", d.limit_test)
    _require(
        0 <= d.val_fraction < 1,
        "data.val_fraction",
        "must be in [0, 1) (0 = no validation split)",
        d.val_fraction,
    )
    _require(d.length >= 1, "data.length", "must be >= 1", d.length)
    _choice("data.variant", d.variant, ("finite", "stream"))
    _require(
        d.epoch_size >= 0,
        "data.epoch_size",
        "must be >= 0 (0 = one pass over the training set)",
        d.epoch_size,
    )
    _require(d.image_size >= 4, "data.image_size", "must be >= 4", d.image_size)
    _require(
        _utf8(d.dir) and _utf8(cfg.train.init_from),
        "data.dir" if not _utf8(d.dir) else "train.init_from",
        "must be a path that is valid UTF-8 (config.toml must read back; rename the folder)",
        d.dir if not _utf8(d.dir) else cfg.train.init_from,
    )
    for a in d.augment:
        _choice("data.augment", a, AUGMENTS)
    _require(
        "crop" not in d.augment or "translate" not in d.augment,
        "data.augment",
        "takes crop or translate, not both",
        d.augment,
    )
    _require(1 <= d.crop_padding <= 16, "data.crop_padding", "must be in 1..16", d.crop_padding)
    _require(d.cutout_size >= 1, "data.cutout_size", "must be >= 1", d.cutout_size)


def _check_model(cfg: Config) -> None:
    from nnlab.models.registry import model_names

    m = cfg.model
    if is_user_model(m.name):
        parse_user_model(
            m.name
        )  # FILE.py:Class or package.module:Class (a malformed one: one line)
    else:
        _require(
            m.name in model_names(),
            "model.name",
            f"must be one of {', '.join(model_names())}, or a user's model FILE.py:Class",
            m.name,
        )
    _check_user_keys(cfg)
    _choice("model.backend", m.backend, BACKENDS)
    _require(
        m.backend == "torch" or m.name == "mlp",
        "model.backend",
        "numpy is available for model.name = mlp only",
        m.backend,
    )
    if m.backend == "numpy":  # what the from-scratch NumPy MLP implements (nnlab/numpy_mlp)
        _require(
            m.activation in ("relu", "sigmoid", "tanh"),
            "model.activation",
            "with model.backend=numpy must be relu, sigmoid or tanh",
            m.activation,
        )
        _require(
            not m.dropout and not m.batchnorm,
            "model.backend",
            "numpy has no dropout or batchnorm; set model.dropout=0, model.batchnorm=false",
            m.backend,
        )
        _require(
            cfg.schedule.name in ("none", "step", "cosine"),
            "schedule.name",
            "with model.backend=numpy must be none, step or cosine",
            cfg.schedule.name,
        )
    _require(
        len(m.hidden) >= 1 and all(h >= 1 for h in m.hidden),
        "model.hidden",
        "must list one or more positive widths like 400,400",
        m.hidden,
    )
    _choice("model.activation", m.activation, ACTIVATIONS)
    _require(0 <= m.dropout < 1, "model.dropout", "must be in [0, 1)", m.dropout)
    _choice("model.impl", m.impl, ("scratch", "fused"))
    _choice("model.init", m.init, ("default", "orthogonal", "identity", "auto"))
    _require(
        bool(m.widths) and all(_WIDTH_TOKEN.fullmatch(w) for w in m.widths),
        "model.widths",
        "must list layers like 64,64,M3,128,R128,M,G,F512 (conv width, R residual, "
        "M/M3/A pool, G/GM global pool, F dense)",
        m.widths,
    )


def _check_user_keys(cfg: Config) -> None:
    """model.kwargs, model.modules and model.sha256: only with a user's file they apply to."""
    m = cfg.model
    _require(
        not m.kwargs or is_user_model(m.name),
        "model.kwargs",
        "are a user's model's constructor arguments (model.name = FILE.py:Class); "
        "nnlab's models take their own keys",
        m.kwargs,
    )
    for key in m.kwargs:
        _require(
            key.isidentifier() and key not in ("input_shape", "n_inputs", "n_classes"),
            f"model.kwargs.{key}",
            "must be a Python argument name; input_shape, n_inputs and n_classes come from the data",
            key,
        )
    _require(
        not m.modules or (m.backend == "numpy" and m.modules.endswith(".py")),
        "model.modules",
        "is a .py file of NumPy modules for model.backend = numpy "
        "(a torch model goes in model.name = FILE.py:Class)",
        m.modules,
    )
    _require(
        not m.sha256 or (is_user_model(m.name) or bool(m.modules)),
        "model.sha256",
        "records a user's file (model.name = FILE.py:Class or model.modules); leave it empty",
        m.sha256,
    )
    _require(
        _utf8(m.name) and _utf8(m.modules),
        "model.name" if not _utf8(m.name) else "model.modules",
        "must be a path that is valid UTF-8 (config.toml must read back; rename the file)",
        m.name if not _utf8(m.name) else m.modules,
    )


def _check_optim(cfg: Config) -> None:
    o, s = cfg.optim, cfg.schedule
    from nnlab.engine.optim import OPTIMIZERS, SCHEDULES  # the tables themselves: names only

    _choice("optim.name", o.name, OPTIMIZERS)
    _require(o.lr > 0, "optim.lr", "must be > 0", o.lr)
    _require(o.weight_decay >= 0, "optim.weight_decay", "must be >= 0", o.weight_decay)
    _require(0 <= o.momentum < 1, "optim.momentum", "must be in [0, 1)", o.momentum)
    _require(
        not o.nesterov or o.momentum > 0, "optim.nesterov", "needs optim.momentum > 0", o.nesterov
    )
    _require(0 <= o.alpha < 1, "optim.alpha", "must be in [0, 1)", o.alpha)
    _require(
        len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas),
        "optim.betas",
        "must be two numbers in [0, 1) like 0.9,0.999",
        o.betas,
    )

    _choice("schedule.name", s.name, SCHEDULES)
    _require(s.step_size >= 1, "schedule.step_size", "must be >= 1", s.step_size)
    _require(0 < s.gamma <= 1, "schedule.gamma", "must be in (0, 1]", s.gamma)
    _require(
        0 < s.pct_start < 1,
        "schedule.pct_start",
        "must be between 0 and 1 (exclusive)",
        s.pct_start,
    )
    _require(
        0 <= s.min_lr < o.lr,
        "schedule.min_lr",
        f"must be >= 0 and below optim.lr ({o.lr})",
        s.min_lr,
    )
    _require(0 < s.start_factor <= 1, "schedule.start_factor", "must be in (0, 1]", s.start_factor)


def _check_train(cfg: Config) -> None:
    t = cfg.train
    _require(t.epochs >= 1, "train.epochs", "must be >= 1", t.epochs)
    _require(t.batch_size >= 1, "train.batch_size", "must be >= 1", t.batch_size)
    _require(t.eval_every >= 1, "train.eval_every", "must be >= 1", t.eval_every)
    _require(
        t.checkpoint_every_s >= 0,
        "train.checkpoint_every_s",
        "must be >= 0 (0 = at every evaluation)",
        t.checkpoint_every_s,
    )
    _require(t.clip_norm >= 0, "train.clip_norm", "must be >= 0 (0 = off)", t.clip_norm)
    _require(t.patience >= 0, "train.patience", "must be >= 0 (0 = off)", t.patience)
    _require(
        0 <= t.label_smoothing < 1, "train.label_smoothing", "must be in [0, 1)", t.label_smoothing
    )
    _require(t.seed >= 0, "train.seed", "must be >= 0", t.seed)
    _require(t.threads >= 0, "train.threads", "must be >= 0 (0 = automatic)", t.threads)
    _choice("train.amp", t.amp, ("auto", "on", "off"))
    _choice("train.channels_last", t.channels_last, ("auto", "on", "off"))
    _choice("train.compile_mode", t.compile_mode, ("default", "reduce-overhead", "max-autotune"))
    _choice("train.manual_step", t.manual_step, ("auto", "on", "off"))
    _require(
        not (t.init_from and cfg.model.backend == "numpy"),
        "train.init_from",
        "is for torch models (the numpy backend starts from its own initialisation)",
        t.init_from,
    )
    _require(
        t.compile or t.compile_mode == "default",
        "train.compile_mode",
        "needs train.compile = true",
        t.compile_mode,
    )
    _require(
        t.tta in (0, 1, 2),
        "train.tta",
        "must be 0 (off), 1 (mirror) or 2 (mirror + translate)",
        t.tta,
    )
    _require(0 <= t.ema < 1, "train.ema", "must be in [0, 1) (0 = off), e.g. 0.99", t.ema)
    _require(t.ema_every >= 1, "train.ema_every", "must be >= 1", t.ema_every)
    _require(
        not t.lookahead or t.ema > 0,
        "train.lookahead",
        "needs train.ema > 0 (the average it pulls towards)",
        t.lookahead,
    )
    dev = t.device
    _require(
        dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit()),
        "train.device",
        "must be one of auto, cpu, cuda, cuda:N, mps",
        dev,
    )
