"""Memory a config needs, estimated from the config alone, and refused before anything is allocated.

``estimate(cfg)`` adds up, in bytes, what a run of ``cfg`` holds at its peak: the dataset
as its loader builds it (generator temporaries, the split, the float tensors), the model's
parameters with their gradients, optimizer state, weight average and the in-memory copy
of the best checkpoint, and the activations of one training and one evaluation batch.
Each term names the config key that drives it. The figures are rough: within about a
factor of two of the measured peak (``benchmarks/memory_estimate.py``, docs/reliability.md).

Two checks use it, so that a config whose tensors cannot fit is one line naming the key
and the estimate instead of minutes of swapping and a killed process:

- ``check_absurd`` (part of ``config.check.validate``, so every config, also a run's
  ``config.toml`` read back by ``nnlab report``): more than ``ABSURD_BYTES`` (1 TiB), or a
  single tensor of more than ``MAX_TENSOR_ELEMENTS``, fits no machine nnlab runs on.
- ``check_fits`` (``nnlab train``/``sweep`` before any folder is created, each run of a
  sweep's plan, and ``data.load_data`` before a dataset is built): more than
  ``SAFETY`` of this machine's memory (``machine_memory``: physical memory, or the cgroup
  limit when lower). ``NNLAB_MEMORY_GB=N`` declares N GB instead (for a machine whose
  memory the check reads wrongly, or a run known to fit).

Nothing here imports torch: it is arithmetic on the config.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nnlab.errors import ConfigError

ABSURD_BYTES = 2**40  # 1 TiB: beyond any machine nnlab runs on
MAX_TENSOR_ELEMENTS = 2**36  # one tensor this large (256 GiB in float32) is a typo, not a run
SAFETY = 0.8  # refuse a run whose estimate passes this share of the machine's memory
MEMORY_ENV = "NNLAB_MEMORY_GB"
TOY = ("moons", "circles", "blobs")
FLOAT = 4  # bytes of a float32
_OPTIMIZER_STATES = {"sgd": 1, "adam": 2, "adamw": 2, "rmsprop": 2}  # tensors per parameter


class LimitError(ConfigError):
    """A config past a limit (memory, tensor size): one line naming the key and the estimate."""


@dataclass
class Need:
    """``bytes`` of memory for ``what``, driven by config ``key`` (shown as ``key=value``)."""

    key: str
    what: str
    bytes: int
    elements: int = 0  # the largest single tensor of this term


def _shown(section: Any, dotted: str) -> str:
    """``key=value`` for a message; ``section`` is the config section holding the key."""
    value = getattr(section, dotted.partition(".")[2])
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"{dotted}={text if len(text) <= 40 else text[:37] + '...'}"


def input_shape(d: Any) -> tuple[int, ...]:
    """One example's shape as the ``[data]`` section ``d`` loads it (imagefolder: 3 x image_size^2)."""
    if d.name == "palindrome":
        return (d.length, 10 if d.one_hot else 1)
    if d.name == "cifar10":
        return (3, 32, 32)
    if d.name == "imagefolder":
        return (3, d.image_size, d.image_size)
    return (2,)


def n_classes(d: Any) -> int:
    """Classes of the ``[data]`` section ``d`` (imagefolder: unknown before reading; 10)."""
    return d.centers if d.name == "blobs" else 2 if d.name in TOY else 10


def _palindrome_count(length: int) -> int:
    """How many palindromes exist, capped at 10^30 (more than any sample count)."""
    half = -(-(length + 1) // 2)
    return 10 ** min(half, 30)


def data_needs(d: Any) -> list[Need]:
    """The dataset of the ``[data]`` section ``d`` as its loader builds it (``nnlab.data``),
    peak temporaries included."""
    n = d.n_samples
    keep = 2 if d.val_fraction else 1  # holding a validation split out copies the training set
    if d.name in TOY:
        # scikit-learn draws float64 points, splits (copies) and standardises (float32 copies)
        needs = [Need(_shown(d, "data.n_samples"), "the dataset", n * (80 + 16 * keep), n * 2)]
        if d.name == "blobs":  # a centre each (float64 x 2) and per-centre bookkeeping
            needs.append(Need(_shown(d, "data.centers"), "the blob centres", d.centers * 120))
        return needs
    if d.name == "palindrome":
        t, f = d.length, (10 if d.one_hot else 1)
        half = -(-(t + 1) // 2)
        total = _palindrome_count(t)
        # digits as int64 (drawn, then mirrored), then float inputs (one-hot: int64 first)
        per_example = 16 * (t + 1) + 16 * half + 32 + (12 * t * f if d.one_hot else 4 * t)
        key = _shown(d, "data.length") if t > 100 else _shown(d, "data.n_samples")
        if d.variant == "finite":
            rows = min(n, total)
            # numpy's choice without replacement permutes the whole population when n > total/50
            choice = 8 * total if 50 * rows > total else 16 * rows
            # a validation split copies the float inputs (hold_out indexes them)
            held = (keep - 1) * FLOAT * t * f
            needs = [
                Need(key, "the palindromes", rows * (per_example + held) + choice, rows * t * f)
            ]
            if d.epoch_size:  # RepeatLoader gathers each epoch's examples at once
                each = 16 + FLOAT * t * f
                needs.append(
                    Need(
                        _shown(d, "data.epoch_size"),
                        "an epoch's examples",
                        d.epoch_size * each,
                        d.epoch_size * t * f,
                    )
                )
            return needs
        n_test = min(max(1, round(n * d.test_fraction)), total)
        n_train = d.epoch_size or max(n - n_test, 1)
        fixed = Need(key, "the test palindromes", n_test * per_example, n_test * t * f)
        drawn_key = _shown(d, "data.epoch_size") if d.epoch_size else key
        # epoch 0's draw stays in the bundle while each epoch draws anew
        stream = Need(
            drawn_key, "an epoch's palindromes", 2 * n_train * per_example, n_train * t * f
        )
        return [fixed, stream]
    if d.name == "cifar10":  # the memory-mapped cache: 60,000 images of 3 x 32 x 32 bytes
        return [Need("data.name=cifar10", "the dataset", 60_000 * 3072 * keep)]
    # imagefolder: how many images is known only when the folder is read (load_tree checks
    # that, image by image); a decoded image is 3 x s x s bytes, twice while stacked
    count = (d.limit_train + d.limit_test) or 1
    side = d.image_size
    return [
        Need(
            _shown(d, "data.image_size"),
            "the decoded images",
            count * 2 * 3 * side * side * keep,
            count * 3 * side * side,
        )
    ]


def _cnn_layers(widths: list[str], shape: tuple[int, ...], classes: int) -> tuple[int, ...]:
    """``(parameters, largest weight, kept activations, largest layer)`` per example of the
    VGG-style CNN (``nnlab.models.cnn``)."""
    channels, h, w = shape
    params = biggest = acts = peak = 0
    flat = None
    for token in widths:
        if token.isdigit() or token.startswith("R"):
            out = int(token.lstrip("R"))
            convs = 2 if token.startswith("R") else 1
            params += convs * (9 * channels * out + out)
            biggest = max(biggest, 9 * channels * out)
            acts += convs * 3 * out * h * w  # conv, [BatchNorm], activation outputs are kept
            peak = max(peak, out * h * w)
            channels = out
        elif token in ("M", "A", "M3"):
            k = 3 if token == "M3" else 2
            h, w = max((h - k) // 2 + 1, 1), max((w - k) // 2 + 1, 1)
            acts += channels * h * w
        elif token in ("G", "GM"):
            h = w = 1
        elif token.startswith("F"):
            width = flat if flat is not None else channels * h * w
            flat = int(token[1:])
            params += (width + 1) * flat
            biggest = max(biggest, width * flat)
            acts += 2 * flat
            peak = max(peak, flat)
    width = flat if flat is not None else channels * h * w
    params += (width + 1) * classes
    return params, max(biggest, width * classes), acts, max(peak, classes)


def _layers(cfg: Any, shape: tuple[int, ...], classes: int) -> tuple[int, ...]:
    """``(parameters, largest weight, kept activations, largest layer)`` per example of the
    model ``cfg.model`` builds for examples of ``shape``."""
    m = cfg.model
    convolutional, recurrent = m.name in ("cnn", "cnn-fast"), m.name in ("rnn", "lstm", "gru")
    if (
        (convolutional and len(shape) != 3)
        or (recurrent and len(shape) != 2)
        or not (convolutional or recurrent or m.name == "mlp")
    ):
        # data the model cannot take (its builder says so in one line), or a user's model
        # (FILE.py:Class) whose layers are not known here: only the data is estimated
        return 0, 0, 0, 0
    if m.name == "mlp":
        dims = [math.prod(shape), *m.hidden, classes]
        layers = list(zip(dims, dims[1:], strict=False))  # (inputs, outputs) of each Linear
        params = sum((a + 1) * b for a, b in layers)
        return params, max(a * b for a, b in layers), 3 * sum(dims[1:]), max(dims)
    if m.name in ("rnn", "lstm", "gru"):
        gates = {"rnn": 1, "lstm": 4, "gru": 3}[m.name]
        hidden, steps = (m.hidden[0] if m.hidden else 1), shape[0]
        params = gates * hidden * (shape[1] + hidden + 2) + (hidden + 1) * classes
        acts = 3 * steps * gates * hidden + steps * shape[1]  # every step's gates are kept
        return params, gates * hidden * hidden, acts, steps * max(shape[1], gates * hidden)
    if m.name == "cnn":
        return _cnn_layers(list(m.widths), shape, classes)
    if m.name != "cnn-fast":  # a user's model (FILE.py:Class): unknown until it is built
        return 0, 0, 0, 0
    # cnn-fast: patch whitening (2 x C x 2 x 2 channels), then per width a conv group
    # (conv at full side, pool, conv at half the side; an R group has two convs more)
    side, channels = shape[1], 2 * shape[0] * 4
    params = biggest = acts = peak = 0
    for token in m.widths:
        digits = token.removeprefix("R")
        width = int(digits) if digits.isdigit() else 0
        inner = 2 if token.startswith("R") else 1  # convs at half the side
        params += 9 * channels * width + inner * 9 * width * width
        biggest = max(biggest, 9 * channels * width, 9 * width * width)
        acts += 3 * width * side * side + 3 * (inner - 1) * width * (side // 2) ** 2
        peak = max(peak, width * side * side)
        side, channels = max(side // 2, 1), width
    return params + channels * classes, max(biggest, channels * classes), acts, peak


def model_needs(cfg: Any) -> list[Need]:
    """Parameters with gradients, optimizer state, the weight average and the kept best
    checkpoint; activations of a training batch and of an evaluation batch."""
    m, t, d = cfg.model, cfg.train, cfg.data
    shape = input_shape(d)
    params, biggest, acts, peak = _layers(cfg, shape, n_classes(d))
    size = 8 if m.backend == "numpy" else FLOAT
    states = _OPTIMIZER_STATES.get(cfg.optim.name, 2)
    # weights + gradients, optimizer state, a best checkpoint (weights + state), the average
    copies = 2 + states + (1 + states) + (1 if t.ema else 0)
    batch, example = t.batch_size, math.prod(shape)
    # evaluation runs without gradients: only a layer or two are alive at a time
    evaluation = max(batch, 512 if len(shape) == 3 else 2048)
    activations = (batch * (acts + 2 * example) + evaluation * (2 * peak + example)) * size
    key = _shown(t, "train.batch_size")
    if d.name == "imagefolder":
        key += f" with {_shown(d, 'data.image_size')}"
    elif d.name == "palindrome":
        key += f" with {_shown(d, 'data.length')}"
    weights_key = _shown(m, "model.widths" if m.name.startswith("cnn") else "model.hidden")
    if d.name == "blobs" and d.centers >= 1000:  # one output (logit) per centre
        key += f" with {_shown(d, 'data.centers')}"
        weights_key += f" with {_shown(d, 'data.centers')}"
    return [
        Need(
            weights_key,
            "the model's weights, gradients and optimizer state",
            params * size * copies,
            biggest,
        ),
        Need(key, "a batch's activations", activations, max(batch, evaluation) * peak),
    ]


def estimate(cfg: Any) -> list[Need]:
    """Every term of the memory a run of ``cfg`` needs, largest first."""
    return sorted([*data_needs(cfg.data), *model_needs(cfg)], key=lambda need: -need.bytes)


def gigabytes(n: float) -> str:
    gb = n / 1e9
    if gb >= 1e6:
        return f"{gb:.1e} GB"
    return f"{gb:,.0f} GB" if gb >= 10 else f"{gb:.1f} GB" if gb >= 0.1 else f"{gb:.2f} GB"


def _refusal(needs: list[Need], limit: str) -> str:
    top, total = needs[0], sum(need.bytes for need in needs)
    rest = f" (~{gigabytes(total)} in all)" if total > 1.25 * top.bytes else ""
    return f"{top.key} needs ~{gigabytes(top.bytes)} for {top.what}{rest}; {limit}"


def check_absurd(cfg: Any) -> None:
    """Refuse (LimitError) what no machine holds: over ``ABSURD_BYTES`` in all, or one tensor
    over ``MAX_TENSOR_ELEMENTS``. Machine-independent, so a run's config.toml reads back anywhere."""
    needs = estimate(cfg)
    huge = max(needs, key=lambda need: need.elements)
    if huge.elements > MAX_TENSOR_ELEMENTS:
        raise LimitError(
            f"{huge.key} makes one tensor of {huge.elements:.2g} elements for {huge.what} "
            f"(~{gigabytes(huge.elements * FLOAT)}); nnlab refuses tensors over {MAX_TENSOR_ELEMENTS:.2g} elements"
        )
    if sum(need.bytes for need in needs) > ABSURD_BYTES:
        raise LimitError(
            _refusal(needs, f"no machine nnlab runs on has that (limit {gigabytes(ABSURD_BYTES)})")
        )


def check_limits(cfg: Any) -> None:
    """What ``config.check.validate`` refuses here: a string holding NUL (no path or name can
    hold one; a run folder named after it could not be created), and ``check_absurd``."""
    for section in ("data", "model", "optim", "schedule", "train"):
        for key, value in vars(getattr(cfg, section)).items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and "\0" in item:
                    raise LimitError(
                        f"{section}.{key}: must not contain a NUL character, got {item!r}"
                    )
    check_absurd(cfg)


def machine_memory() -> tuple[int, str]:
    """(bytes, where from): ``$NNLAB_MEMORY_GB``, else physical memory or the cgroup limit, the lower."""
    declared = os.environ.get(MEMORY_ENV, "").strip()
    if declared:
        try:
            value = float(declared)
        except ValueError:
            value = -1.0
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{MEMORY_ENV}: expected a number of GB > 0, got {declared!r}")
        return int(value * 1e9), f"{MEMORY_ENV}={declared}"
    return _physical_memory(), "this machine has"


@lru_cache(maxsize=1)
def _physical_memory() -> int:
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a large machine
        total = 2**40
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as f:
                text = f.read(64).strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return total


def check_fits(cfg: Any, needs: list[Need] | None = None) -> None:
    """Refuse (LimitError, one line naming the key and the estimate) a config that would need
    more than ``SAFETY`` of this machine's memory (``machine_memory``)."""
    needs = estimate(cfg) if needs is None else sorted(needs, key=lambda need: -need.bytes)
    memory, source = machine_memory()
    if needs and sum(need.bytes for need in needs) > SAFETY * memory:
        where = (
            f"{source} {gigabytes(memory)}"
            if source.startswith("this")
            else f"{source} declares {gigabytes(memory)}"
        )
        raise LimitError(
            _refusal(
                needs,
                f"{where} (nnlab uses at most {SAFETY:.0%}; lower it, or set {MEMORY_ENV} if it fits)",
            )
        )


def check_data_fits(d: Any) -> None:
    """``check_fits`` for the ``[data]`` section ``d`` alone (``nnlab.data.load_data``: resume,
    ``Run.data``, a sweep's workers)."""
    check_fits(None, data_needs(d))
