"""What each config key means, for ``nnlab keys`` and ``nnlab presets NAME``.

The meaning of a key is the comment beside its field in ``config/sections.py``
(the comment lines just above the field, then the one at the end of its line):
that file stays the one place a key is declared and explained. The comments are
read once with ``tokenize`` and ``ast``; nothing here imports torch.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import tokenize
import typing
from typing import Any

from nnlab.config import sections as section_module
from nnlab.config.sections import SECTIONS
from nnlab.config.values import toml_value


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """One config key: ``section.name``, its type, default (as TOML) and meaning."""

    section: str
    name: str
    type: str
    default: str
    help: str

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


@functools.cache
def field_help() -> dict[str, str]:
    """``{"section.key": meaning}`` from the field comments of ``config/sections.py``."""
    source = inspect.getsource(section_module)
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, whole line?)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            whole = not tok.line[: tok.start[1]].strip()
            comments[tok.start[0]] = (tok.string.lstrip("#").strip(), whole)
    sections = {cls.__name__: name for name, cls in SECTIONS.items()}
    out = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.ClassDef) and node.name in sections):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            above = []
            line = item.lineno - 1
            while line in comments and comments[line][1]:
                above.insert(0, comments[line][0])
                line -= 1
            after = [
                comments[n][0]
                for n in range(item.lineno, (item.end_lineno or item.lineno) + 1)
                if n in comments and not comments[n][1]
            ]
            text = " ".join([*above, *after])
            out[f"{sections[node.name]}.{item.target.id}"] = text
    return out


def type_name(tp: Any) -> str:
    """``int``, ``float``, ``bool``, ``str``, ``list[int]``..."""
    if typing.get_origin(tp) is list:
        return f"list[{type_name(typing.get_args(tp)[0])}]"
    return tp.__name__


def keys() -> list[KeyInfo]:
    """Every config key, section by section, in declaration order."""
    helps = field_help()
    out = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        defaults = dataclasses.asdict(cls())
        for f in dataclasses.fields(cls):
            out.append(
                KeyInfo(
                    section,
                    f.name,
                    type_name(hints[f.name]),
                    toml_value(defaults[f.name]),
                    helps.get(f"{section}.{f.name}", ""),
                )
            )
    return out


def format_keys(markdown: bool = False) -> str:
    """The ``nnlab keys`` listing: one line per key (type, default, meaning), grouped by section."""
    infos = keys()
    lines: list[str] = []
    if markdown:
        for section in SECTIONS:
            lines += [
                f"### [{section}]",
                "",
                "| key | type | default | meaning |",
                "|---|---|---|---|",
            ]
            for k in infos:
                if k.section == section:
                    cells = [f"`{k.key}`", k.type, f"`{k.default}`", k.help.replace("|", "\\|")]
                    lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        return "\n".join([*lines, TUNE_NOTE]).rstrip() + "\n"
    key_w = max(len(k.key) for k in infos)
    type_w = max(len(k.type) for k in infos)
    default_w = min(24, max(len(k.default) for k in infos))
    for section in SECTIONS:
        lines.append(f"[{section}]")
        for k in infos:
            if k.section == section:
                cells = f"  {k.key:<{key_w}}  {k.type:<{type_w}}  {k.default:<{default_w}}"
                lines.append(f"{cells}  {k.help}".rstrip())
        lines.append("")
    return "\n".join([*lines, TUNE_NOTE]).rstrip() + "\n"


# Not a section of every run: the settings and search space of `nnlab tune` (config/tune.py).
TUNE_NOTE = (
    "A config may also hold nnlab tune's table: [tune] trials, metric (val_acc | val_loss), "
    'direction, pruner (median | halving | none) and [tune.params] "section.key" = "SPEC" '
    "(loguniform(LOW, HIGH), uniform, int, logint, choice(A, B, ...)); see 'nnlab tune --help' "
    "and docs/tune.md."
)


def format_config(cfg: Any) -> str:
    """A resolved config as TOML, each key followed by its meaning as a comment.

    Keys whose value is not the default say so (``[default: ...]``), so what a
    preset changes stands out. The text reads back with ``load_config``.
    """
    helps = field_help()
    lines = [f"preset = {toml_value(cfg.name)}"]
    if cfg.description:
        lines.append(f"description = {toml_value(cfg.description)}")
    for section, cls in SECTIONS.items():
        defaults = dataclasses.asdict(cls())
        values = dataclasses.asdict(getattr(cfg, section))
        rows = [(f"{key} = {toml_value(value)}", key) for key, value in values.items()]
        width = max(len(text) for text, _ in rows)
        lines += ["", f"[{section}]"]
        for text, key in rows:
            note = helps.get(f"{section}.{key}", "")
            if values[key] != defaults[key]:
                note = f"{note} [default: {toml_value(defaults[key])}]".strip()
            lines.append(f"{text:<{width}}  # {note}" if note else text)
    if cfg.sweep:  # the preset's own grid, as to_toml writes it
        lines += [
            "",
            "[sweep]",
            *(f"{toml_value(k)} = {toml_value(v)}" for k, v in cfg.sweep.items()),
        ]
    if cfg.tune:  # nnlab tune's settings and search space, as to_toml writes them
        from nnlab.config.tune import tune_table_toml

        lines += tune_table_toml(cfg.tune)
    return "\n".join(lines) + "\n"
