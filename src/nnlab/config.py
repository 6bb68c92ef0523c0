"""Configs: one dataclass per TOML section, layered defaults -> preset -> ``--set``.

A config resolves in layers (STYLE.md #4):

1. the dataclass defaults below,
2. a preset (``src/nnlab/presets/NAME.toml``) or the user's own TOML file, which
   holds only overrides and may ``extends = "other-preset"``,
3. ``--set section.key=value`` overrides from the command line or the API.

Unknown keys, wrong types and impossible values raise ``ConfigError`` naming the
key and what is allowed. Nothing here imports torch: names of models and
datasets are checked against their registries lazily, in ``validate``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from nnlab.errors import ConfigError

# --------------------------------------------------------------------------- sections


@dataclass
class DataConfig:
    name: str = "moons"  # moons | circles | blobs | cifar10 | imagefolder | palindrome
    n_samples: int = 1000  # toy sets: points; palindrome: distinct sequences
    noise: float = 0.2  # moons, circles: std of the Gaussian noise
    centers: int = 3  # blobs: number of classes
    cluster_std: float = 1.0  # blobs: std of each cluster
    test_fraction: float = 0.2  # share of n_samples held out for testing (toy, palindrome)
    seed: int = -1  # data seed; -1 follows train.seed so each seed draws fresh data
    limit_train: int = 0  # use only the first N training examples (0 = all)
    limit_test: int = 0  # use only the first N test examples (0 = all)
    length: int = 5  # palindrome: number of input digits T
    one_hot: bool = False  # palindrome: 10-way one-hot digits instead of one scalar
    variant: str = "finite"  # palindrome: finite | stream
    epoch_size: int = (
        0  # palindrome: training examples per epoch, a small set repeated (0 = one pass)
    )
    dir: str = ""  # data folder (cifar10 cache, imagefolder root); "" = default
    image_size: int = 32  # imagefolder: images are resized to image_size x image_size
    augment: list[str] = field(default_factory=list)  # e.g. crop, flip, cutout
    normalize: bool = True  # images: per-channel mean/std from the training set
    crop_padding: int = 4  # augment crop (reflect) / translate (zero fill): max shift in pixels
    cutout_size: int = 8  # augment cutout: side of the square zeroed in each image


@dataclass
class ModelConfig:
    name: str = "mlp"  # mlp | cnn | rnn | lstm | gru
    backend: str = "torch"  # torch | numpy (mlp only)
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "relu"  # relu | sigmoid | tanh | gelu
    dropout: float = 0.0
    batchnorm: bool = False
    # cnn: the layers as data, like timm's VGG cfgs (see nnlab/models/cnn.py): "64" conv3x3,
    # "R128" residual block, "M"/"M3" max-pool 2x2 / 3x3 stride 2, "A" avg-pool, "G"/"GM"
    # global avg/max pool, "F512" fully connected. The default is the course report's net.
    widths: list[str] = field(
        default_factory=lambda: ["64", "64", "M3", "128", "128", "M3", "F512"]
    )
    impl: str = (
        "scratch"  # rnn, lstm, gru: scratch (the cell's equations) | fused (torch.nn.RNN/LSTM/GRU)
    )
    # rnn, lstm, gru: default (U(+-1/sqrt(hidden))) | orthogonal | identity (rnn's W_hh = I)
    # | auto (orthogonal for rnn, default for lstm and gru: what measured best on the palindromes)
    init: str = "default"
    forget_bias: float = 1.0  # lstm: forget-gate bias at init; remembering is the default
    update_bias: float = (
        1.0  # gru: update-gate bias at init (z = sigmoid(1) = 0.73 of h kept per step)
    )
    # lstm, gru: chrono init of those biases instead (Tallec & Ollivier, 2018): unit j keeps
    # its state ~u_j steps, u_j ~ U(1, T-1) with T = the sequence length (models/rnn.py)
    chrono: bool = False


@dataclass
class OptimConfig:
    name: str = "adam"  # sgd | adam | adamw | rmsprop
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd, rmsprop
    nesterov: bool = False  # sgd
    alpha: float = 0.99  # rmsprop smoothing constant
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam, adamw


@dataclass
class ScheduleConfig:
    name: str = "none"  # none | step | cosine | onecycle
    step_size: int = 100  # step: epochs between decays
    gamma: float = 0.1  # step: decay factor
    pct_start: float = 0.25  # onecycle, triangle: share of steps spent warming up
    min_lr: float = 0.0  # cosine, triangle: final learning rate
    start_factor: float = 0.2  # triangle: learning rate at step 0, as a share of optim.lr


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 100
    eval_every: int = 1  # evaluate (and checkpoint) every N epochs, and after the last
    clip_norm: float = 0.0  # clip the global gradient norm to this (0 = off)
    patience: int = 0  # stop after N evaluations without a better test_acc (0 = off)
    restore_best: bool = False  # with patience: end on the best checkpoint, not the last
    target_acc: float = 0.0  # stop at the first evaluation with test_acc >= this (0 = off)
    label_smoothing: float = 0.0
    seed: int = 0
    # Warm start: a run folder (its checkpoints/last.pt) or a checkpoint file whose model
    # weights this run starts from; the model.* settings must match. Optimizer, schedule and
    # counters start fresh. E.g. a length curriculum on the palindromes (docs/palindrome.md).
    init_from: str = ""
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int = 0  # CPU threads for torch (0 = pick for the model's size)
    # PyTorch's deterministic algorithms (bit-identical GPU reruns, somewhat slower).
    # CPU runs are deterministic already: same config + seed -> same metrics and weights.
    deterministic: bool = False
    # auto: bf16 autocast / channels_last on CUDA (channels_last for image models only),
    # and for image models on CPUs with AMX bf16 units (2-3x faster there); off on
    # other CPUs and on MPS. on | off force them.
    amp: str = "auto"
    channels_last: str = "auto"
    # Also write TensorBoard event files (scalars per evaluation, the config, the model
    # graph) into the run folder; needs the optional `tensorboard` extra (nnlab/tensorboard_log.py).
    tensorboard: bool = False
    # Speed (docs/performance.md). torch.compile the training forward/backward; the one-off
    # compile (a warm-up step) is timed apart and recorded as compile_seconds in summary.json.
    compile: bool = False
    # torch.compile mode: default | reduce-overhead (CUDA graphs: replays each step's kernels
    # with one launch; for small-batch recipes like seed-cnn; CUDA only) | max-autotune.
    compile_mode: str = "default"
    # Small MLPs: a training step with hand-derived gradients instead of autograd
    # (nnlab/manual_step.py; same arithmetic, ~2x less per-step overhead on a CPU).
    # auto: whenever the run qualifies; on: insist (one-line error saying why not); off: autograd.
    manual_step: str = "auto"
    # Test-time augmentation for image data, at every evaluation (nnlab/tta.py):
    # 0 off; 1 average the logits of each image and its mirror; 2 also of 1-px translations.
    tta: int = 0
    # Average of the weights (nnlab/ema.py): an exponential moving average with this decay
    # per update (0 = off), updated every ema_every steps; evaluations and the final model
    # use the average. lookahead: also pull the training weights to it at each update.
    ema: float = 0.0
    ema_every: int = 1
    lookahead: bool = False


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "train": TrainConfig,
}
TOP_LEVEL_KEYS = ("description", "extends", "sweep")

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "step", "cosine", "onecycle", "triangle")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu")
BACKENDS = ("torch", "numpy")
AUGMENTS = ("crop", "translate", "flip", "cutout")  # image batch transforms, nnlab/data/augment.py


@dataclass
class Config:
    """A fully resolved experiment: the five contract sections plus where it came from."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = "custom"  # the preset or file stem this came from (names run folders)
    description: str = ""
    # For sweep presets: dotted key -> values, e.g. {"data.name": ["moons", "circles"]}.
    sweep: dict[str, list] = field(default_factory=dict)

    def get(self, dotted: str) -> Any:
        section, key = _split_key(dotted)
        return getattr(getattr(self, section), key)

    def replace(self, overrides: dict[str, Any]) -> Config:
        """A validated copy with ``{"section.key": value}`` overrides applied."""
        nested = _nest(overrides)
        return _build(self.to_dict(), nested, self.name, self.description, self.sweep)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}


# --------------------------------------------------------------------------- loading


def preset_names() -> list[str]:
    return sorted(
        p.name[:-5] for p in resources.files("nnlab.presets").iterdir() if p.name.endswith(".toml")
    )


def preset_description(name: str) -> str:
    return _read_toml_text(_preset_text(name), f"preset '{name}'").get("description", "")


def load_config(source: str | Path, overrides: dict[str, Any] | list[str] | None = None) -> Config:
    """Resolve a preset name or TOML path, plus overrides, into a validated Config.

    ``overrides`` is either ``{"optim.lr": 1e-3}`` or a list of ``"key=value"``
    strings as given to ``--set``.
    """
    layers, name, description, sweep = _load_layers(str(source), seen=())
    if isinstance(overrides, list):
        overrides = parse_set_args(overrides)
    nested = {}
    for layer in layers:
        _merge(nested, layer)
    _merge(nested, _nest(overrides or {}))
    return _build(
        {s: dataclasses.asdict(cls()) for s, cls in SECTIONS.items()},
        nested,
        name,
        description,
        sweep,
    )


def parse_set_args(items: list[str]) -> dict[str, str]:
    """``["optim.lr=1e-3", "model.hidden=400,400"]`` -> ``{"optim.lr": "1e-3", ...}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. optim.lr=1e-3")
        _split_key(key.strip())
        out[key.strip()] = value.strip()
    return out


def _preset_text(name: str) -> str:
    path = resources.files("nnlab.presets") / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(
            f"unknown preset '{name}'; known presets: {', '.join(preset_names())} "
            "(or pass a path to a .toml file)"
        )
    return path.read_text(encoding="utf-8")


def _read_toml_text(text: str, where: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: malformed TOML: {exc}") from None


def _load_layers(source: str, seen: tuple[str, ...]) -> tuple[list[dict], str, str, dict]:
    """Read a preset/file and the presets it extends; returns layers oldest first."""
    if source in seen:
        raise ConfigError(
            f"preset '{source}': 'extends' forms a cycle: {' -> '.join(seen + (source,))}"
        )
    path = Path(source)
    if source.endswith(".toml") or path.is_file():
        if path.is_dir() or not path.exists():
            raise ConfigError(f"config file '{source}' does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file '{source}' cannot be read: {exc}") from None
        where, name = f"config file '{source}'", path.stem
    else:
        text, where, name = _preset_text(source), f"preset '{source}'", source
    raw = _read_toml_text(text, where)
    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a [{key}] table")
        elif key not in TOP_LEVEL_KEYS:
            allowed = ", ".join([*SECTIONS, *TOP_LEVEL_KEYS])
            raise ConfigError(f"{where}: unknown key '{key}'; allowed at top level: {allowed}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}: 'description' must be a string")
    sweep = _check_sweep(raw.get("sweep", {}), where)
    layers: list[dict] = []
    if "extends" in raw:
        parent = raw["extends"]
        if not isinstance(parent, str):
            raise ConfigError(f"{where}: 'extends' must be a preset name or file path")
        layers, _, parent_description, parent_sweep = _load_layers(parent, (*seen, source))
        description = description or parent_description
        sweep = {**parent_sweep, **sweep}
    layers.append({k: v for k, v in raw.items() if k in SECTIONS})
    return layers, name, description, sweep


def _check_sweep(sweep: Any, where: str) -> dict[str, list]:
    if not isinstance(sweep, dict):
        raise ConfigError(f"{where}: [sweep] must be a table of 'section.key' = [values]")
    for key, values in sweep.items():
        _split_key(key)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: sweep '{key}' must be a non-empty list of values")
    return dict(sweep)


# --------------------------------------------------------------------------- building


def _split_key(dotted: str) -> tuple[str, str]:
    section, sep, key = dotted.partition(".")
    if not sep or section not in SECTIONS:
        raise ConfigError(
            f"unknown key '{dotted}'; keys look like section.key with section one of {', '.join(SECTIONS)}"
        )
    names = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if key not in names:
        raise ConfigError(f"unknown key '{dotted}'; [{section}] has: {', '.join(names)}")
    return section, key


def _nest(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    nested: dict[str, dict[str, Any]] = {}
    for dotted, value in flat.items():
        section, key = _split_key(dotted)
        nested.setdefault(section, {})[key] = value
    return nested


def _merge(into: dict, layer: dict) -> None:
    for section, values in layer.items():
        into.setdefault(section, {}).update(values)


def _build(base: dict, nested: dict, name: str, description: str, sweep: dict) -> Config:
    sections = {}
    for section, cls in SECTIONS.items():
        values = dict(base[section])
        hints = typing.get_type_hints(cls)
        for key, raw in nested.get(section, {}).items():
            if key not in hints:
                raise ConfigError(
                    f"unknown key '{section}.{key}'; [{section}] has: {', '.join(hints)}"
                )
            values[key] = coerce(f"{section}.{key}", raw, hints[key])
        sections[section] = cls(**values)
    cfg = Config(**sections, name=name, description=description, sweep=sweep)
    validate(cfg)
    return cfg


_BOOLS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


def _type_label(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        inner = typing.get_args(tp)[0]
        return (
            f"a list of {_type_label(inner)}s like "
            + {int: "400,400", float: "0.9,0.999", str: "a,b"}[inner]
        )
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[tp]


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Turn a TOML value or a ``--set`` string into the field's type, or raise ConfigError."""
    bad = ConfigError(f"{key}: expected {_type_label(tp)}, got {value!r}")
    if typing.get_origin(tp) is list:
        inner = typing.get_args(tp)[0]
        if isinstance(value, str):
            items: list = [v.strip() for v in value.split(",")] if value.strip() else []
        elif isinstance(value, list):
            items = value
        else:
            items = [value]
        try:
            return [coerce(key, v, inner) for v in items]
        except ConfigError:
            raise bad from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOLS:
            return _BOOLS[value.lower()]
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise TypeError(f"unsupported config type {tp}")  # a bug in the dataclasses above


# --------------------------------------------------------------------------- validation


def _require(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: {allowed}, got {value!r}")


def _choice(key: str, value: str, choices: typing.Iterable[str]) -> None:
    choices = list(choices)
    _require(value in choices, key, f"must be one of {', '.join(choices)}", value)


def validate(cfg: Config) -> None:
    """Reject impossible values with one line naming the key and what is allowed."""
    for section in SECTIONS:
        for key, value in dataclasses.asdict(getattr(cfg, section)).items():
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, float):
                    _require(math.isfinite(v), f"{section}.{key}", "must be a finite number", v)

    d, m, o, s, t = cfg.data, cfg.model, cfg.optim, cfg.schedule, cfg.train
    from nnlab.data import dataset_names
    from nnlab.models import model_names

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
    _require(d.length >= 1, "data.length", "must be >= 1", d.length)
    _choice("data.variant", d.variant, ("finite", "stream"))
    _require(
        d.epoch_size >= 0,
        "data.epoch_size",
        "must be >= 0 (0 = one pass over the training set)",
        d.epoch_size,
    )
    _require(d.image_size >= 4, "data.image_size", "must be >= 4", d.image_size)
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

    _choice("model.name", m.name, model_names())
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
    bad = [w for w in m.widths if not re.fullmatch(r"R?[1-9]\d*|M3?|A|GM?|F[1-9]\d*", w)]
    _require(
        not bad and bool(m.widths),
        "model.widths",
        "must list layers like 64,64,M3,128,R128,M,G,F512 (conv width, R residual, M/M3/A pool, G/GM global pool, F dense)",
        m.widths,
    )

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

    _require(t.epochs >= 1, "train.epochs", "must be >= 1", t.epochs)
    _require(t.batch_size >= 1, "train.batch_size", "must be >= 1", t.batch_size)
    _require(t.eval_every >= 1, "train.eval_every", "must be >= 1", t.eval_every)
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


# --------------------------------------------------------------------------- writing


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        import json

        return json.dumps(value)  # a JSON string with ASCII escapes is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(cfg: Config) -> str:
    """The fully resolved config as TOML; ``load_config`` reads it back to an equal Config."""
    lines = [f"# resolved from '{cfg.name}'"]
    if cfg.description:
        lines.append(f"description = {_toml_value(cfg.description)}")
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for key, value in dataclasses.asdict(getattr(cfg, section)).items():
            lines.append(f"{key} = {_toml_value(value)}")
    if cfg.sweep:
        lines += ["", "[sweep]"]
        lines += [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in cfg.sweep.items()]
    return "\n".join(lines) + "\n"
