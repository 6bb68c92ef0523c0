"""Where a run's config came from, and whether its numbers may be set against the course report's.

A run's ``config.toml`` records a name (its top-level ``preset`` key): a built-in
preset's name, or the stem of a user's own TOML file. A name alone does not tell
them apart (a user's ``moons.toml``, or ``nnlab reproduce --quick`` shrinking a
preset), so the run's resolved config is compared with that preset's, loaded
fresh: only the keys that apply to the run (``applies``) and that say what was
trained, not where (``MACHINE_KEYS``).

"ours - report" is shown only where the setting is the course report's: a
``seed-*`` preset (``COURSE_PRESETS``), unchanged, at full scale.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from nnlab.reporting.applies import applies

# The presets that are the course report's own experiments (its settings, with correct code).
COURSE_PRESETS = ("seed-moons", "seed-cifar-mlp", "seed-cnn", "seed-rnn")
# Where and how fast a run trained, not what: never a change from the preset.
MACHINE_KEYS = frozenset(
    {
        "train.seed",
        "train.device",
        "train.threads",
        "train.tensorboard",
        "train.compile",
        "train.compile_mode",
        "train.channels_last",
        "train.deterministic",
        "data.dir",
    }
)
# Keys the course report's number itself depends on (``course_reference`` reads them):
# seed-moons' numpy backend is compared with the report's NumPy MLP, not called a change.
REFERENCE_KEYS = frozenset({"model.backend", "data.length"})
# How much was trained: differences here make a reduced (or enlarged) scale.
SCALE_KEYS = (
    "train.epochs",
    "data.n_samples",
    "data.limit_train",
    "data.limit_test",
    "data.epoch_size",
)


@functools.cache
def _preset_dict(name: str) -> dict[str, dict[str, Any]] | None:
    """A built-in preset's resolved config as a dict (None if ``name`` is no built-in preset)."""
    from nnlab.config import load_config, preset_names

    return load_config(name).to_dict() if name in preset_names() else None


def _same(section: str, key: str, ours: Any, theirs: Any) -> bool:
    # An ImageFolder copy of CIFAR-10 (reproduce --cifar10 JPEGs) is the preset's data set.
    if (section, key, ours, theirs) == ("data", "name", "imagefolder", "cifar10"):
        return True
    return ours == theirs


def differences(
    cfg: dict[str, dict[str, Any]], preset: str, skip: frozenset[str] | set[str] = frozenset()
) -> list[str] | None:
    """Dotted keys where ``cfg`` differs from built-in ``preset`` (None: no such preset).

    Only keys that apply to the run or to the preset count; ``MACHINE_KEYS`` and ``skip`` never do.
    """
    theirs_cfg = _preset_dict(preset)
    if theirs_cfg is None:
        return None
    out = []
    for section, values in theirs_cfg.items():
        ours_values = cfg.get(section, {})
        for key, theirs in values.items():
            dotted = f"{section}.{key}"
            if dotted in MACHINE_KEYS or dotted in skip:
                continue
            if not (applies(cfg, section, key) or applies(theirs_cfg, section, key)):
                continue
            if not _same(section, key, ours_values.get(key, theirs), theirs):
                out.append(dotted)
    return out


def preset_value(preset: str, dotted: str) -> Any:
    section, _, key = dotted.partition(".")
    return (_preset_dict(preset) or {}).get(section, {}).get(key)


@dataclass
class Origin:
    """What a config is: a built-in preset as it is, one with changes, or the user's own."""

    name: str
    builtin: bool
    changes: list[str] = field(default_factory=list)

    @property
    def course(self) -> bool:
        return self.builtin and self.name in COURSE_PRESETS

    def label(self) -> str:
        """E.g. ``nnlab's preset``, ``from preset seed-cnn with changes: train.epochs``, ``your config``."""
        if not self.builtin:
            return "your config"
        setup = "; the course report's setup" if self.course else ""
        if not self.changes:
            return f"nnlab's preset{setup}"
        shown = ", ".join(self.changes[:6]) + (
            f" and {len(self.changes) - 6} more" if len(self.changes) > 6 else ""
        )
        return f"from preset {self.name} with changes: {shown}{setup}"


def origin(name: str, cfg: dict[str, dict[str, Any]], skip: frozenset[str] | set[str]) -> Origin:
    """The origin of a run named ``name`` with resolved ``cfg``; ``skip``: keys not to count (swept)."""
    diff = differences(cfg, name, skip)
    return Origin(name, False) if diff is None else Origin(name, True, diff)


def not_comparable(name: str, cfg: dict[str, dict[str, Any]]) -> str:
    """Why this setting's numbers are not the course report's ("" if they are), in a few words."""
    diff = differences(cfg, name, REFERENCE_KEYS)
    if diff is None:
        return "your config"
    if name not in COURSE_PRESETS:
        return f"nnlab's own preset {name}"
    if not diff:
        return ""
    if all(k in SCALE_KEYS for k in diff):
        smaller = all(_scale(cfg, k) < _scale(_preset_dict(name) or {}, k) for k in diff)
        return f"{'reduced' if smaller else 'different'} scale ({', '.join(diff)})"
    changed = [k for k in diff if k not in SCALE_KEYS]
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return f"changed settings ({', '.join(changed[:3])}{more})"


def _scale(cfg: dict[str, dict[str, Any]], dotted: str) -> float:
    section, _, key = dotted.partition(".")
    value = cfg.get(section, {}).get(key, 0)
    # a limit or epoch_size of 0 means "all of it"
    return (
        float("inf") if key in ("limit_train", "limit_test", "epoch_size") and not value else value
    )
