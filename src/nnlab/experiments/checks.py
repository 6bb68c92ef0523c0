"""``nnlab check FILE.py[:Class] ...``: check users' modules and models, many files at once.

What an instructor runs over a folder of submissions: each file is imported (it
is named on the command line, so its code runs), and

- a file of NumPy modules (classes with ``forward`` and ``backward``; all of them,
  or the one named) gets numerical gradient checks of every module
  (``numpy_mlp/gradcheck.py``);
- a torch model (``FILE.py:Class``, or the one ``nn.Module`` a file defines) gets
  output shape, parameter count, gradients and overfitting one batch
  (``models/model_check.py``).

Each check is one ``CheckRow`` (file, module, check, status, value, detail). A file
that cannot be checked at all (no such file, a syntax error, it raises on import, no
such class, neither kind of class) is one ``error`` row among many files, and a
one-line ConfigError when it is the only one.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Any

from nnlab.errors import ConfigError
from nnlab.models.user_code import defined_classes, import_user_code, user_class
from nnlab.numpy_mlp.gradcheck import check_module, is_protocol_class

COLUMNS = ("file", "module", "check", "status", "value", "detail")


@dataclass
class CheckRow:
    """One check: ``status`` is pass, fail, error or skip; ``value`` the relative error of a
    gradient check, or what a model check measured (parameters, steps)."""

    file: str
    module: str
    check: str
    status: str
    value: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_spec(spec: str) -> tuple[str, str]:
    """``"file.py:Class"`` -> ``("file.py", "Class")``; ``"file.py"`` -> ``("file.py", "")``."""
    target, sep, cls = spec.rpartition(":")
    if sep and target and cls.isidentifier():
        return target, cls
    return spec, ""


def check_files(
    specs: list[str],
    *,
    input_shape: tuple[int, ...] = (2,),
    n_classes: int = 2,
    kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    steps: int = 500,
) -> list[CheckRow]:
    """Every check of every ``FILE.py[:Class]`` in ``specs``, in order.

    ``input_shape``, ``n_classes`` and ``kwargs`` build a torch model (as ``model.kwargs``
    would); ``steps`` bounds its overfitting check; ``seed`` draws shapes, data and weights."""
    if not specs:
        raise ConfigError("check: give one or more FILE.py or FILE.py:Class")
    if n_classes < 2 or not input_shape or any(n < 1 for n in input_shape) or steps < 1:
        raise ConfigError(
            f"check: needs n_classes >= 2, a positive input_shape and steps >= 1, got "
            f"{n_classes}, {tuple(input_shape)}, {steps}"
        )
    rows: list[CheckRow] = []
    for spec in specs:
        try:
            rows += check_file(
                spec,
                input_shape=tuple(input_shape),
                n_classes=n_classes,
                kwargs=dict(kwargs or {}),
                seed=seed,
                steps=steps,
            )
        except ConfigError as exc:
            if len(specs) == 1:
                raise
            detail = str(exc).removeprefix("check: ")
            rows.append(CheckRow(split_spec(spec)[0], "", "load", "error", None, detail))
    return rows


def check_file(
    spec: str,
    *,
    input_shape: tuple[int, ...],
    n_classes: int,
    kwargs: dict[str, Any],
    seed: int,
    steps: int,
) -> list[CheckRow]:
    """The checks of one ``FILE.py[:Class]`` (see the module docstring); ConfigError when none can run."""
    target, cls_name = split_spec(spec)
    module = import_user_code(target, "check")
    classes = (
        [user_class(module, cls_name, "check", target)] if cls_name else defined_classes(module)
    )
    models = [c for c in classes if _is_torch_module(c)]
    numpy = [c for c in classes if c not in models and is_protocol_class(c)]
    if cls_name and not (models or numpy):
        raise ConfigError(
            f"check: {spec} is neither a torch.nn.Module nor a NumPy module (forward and backward)"
        )
    if (not models) if cls_name else bool(numpy):  # NumPy modules: every one's gradients
        rows = []
        for i, cls in enumerate(numpy):
            rows += [
                CheckRow(target, r.module, r.check, r.status, r.error, r.detail)
                for r in check_module(cls, seed + i)
            ]
        return rows
    if len(models) != 1:
        names = ", ".join(c.__name__ for c in models)
        raise ConfigError(
            f"check: {target} defines several torch.nn.Modules ({names}); name the model: {target}:Class"
            if models
            else f"check: {target} defines no NumPy module (a class with forward and backward) "
            "and no torch.nn.Module"
        )
    from nnlab.models.model_check import check_model

    found = check_model(models[0], kwargs, input_shape, n_classes, seed=seed, steps=steps)
    return [CheckRow(target, r.model, r.check, r.status, r.value, r.detail) for r in found]


def _is_torch_module(cls: type) -> bool:
    """Whether ``cls`` is a torch ``nn.Module`` (torch is looked at only if the file imported it)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(cls, type) and issubclass(cls, torch.nn.Module)


def format_rows(rows: list[CheckRow]) -> str:
    """An aligned table, one row per check, then a line of totals."""
    cells = [[r.file, r.module, r.check, r.status, _value(r.value), r.detail] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(COLUMNS)]
    widths[-1] = 0  # the detail column is last: no padding
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join([*lines, totals(rows)]) + "\n"


def totals(rows: list[CheckRow]) -> str:
    """``N checks of F file(s): P passed, X failed, E errors, S skipped``."""
    counts = {s: sum(r.status == s for r in rows) for s in ("pass", "fail", "error", "skip")}
    files = len({r.file for r in rows})
    parts = [f"{counts['pass']} passed", f"{counts['fail']} failed"]
    if counts["error"]:
        parts.append(f"{counts['error']} error{'s' if counts['error'] > 1 else ''}")
    if counts["skip"]:
        parts.append(f"{counts['skip']} skipped")
    return f"{len(rows)} checks of {files} file(s): {', '.join(parts)}"


def format_csv(rows: list[CheckRow]) -> str:
    """The rows as CSV with a header (``COLUMNS``), e.g. for a spreadsheet of a class's submissions."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([r.file, r.module, r.check, r.status, _value(r.value), r.detail] for r in rows)
    return buf.getvalue()


def _value(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"  # an error, or a count


__all__ = [
    "COLUMNS",
    "CheckRow",
    "check_file",
    "check_files",
    "format_csv",
    "format_rows",
    "split_spec",
]
