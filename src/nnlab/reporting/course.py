"""The course report's own results, to set beside ours, and where each experiment belongs in it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOY_DATA = ("moons", "circles", "blobs")  # the 2-D sets: their runs have decision boundaries


@dataclass(frozen=True)
class Reference:
    """A number from the course report to set beside ours (``value`` None: it gave a figure only)."""

    value: float | None
    text: str
    metric: str = "final_test_acc"  # the report's CNN number is its best epoch: best_test_acc


def course_reference(cfg: dict[str, dict[str, Any]]) -> Reference | None:
    """The course report's result for the experiment a resolved config (as a dict) describes."""
    data, model = cfg["data"], cfg["model"]
    if data["name"] == "moons":
        if model.get("backend") == "numpy":
            return Reference(0.96, "96% (its from-scratch NumPy MLP)")
        return Reference(0.91, "91% (its PyTorch MLP)")
    if data["name"] in ("cifar10", "imagefolder"):
        if model["name"] == "mlp":
            return Reference(0.55, "~55% (its MLP)")
        if model["name"] in ("cnn", "cnn-fast"):  # our CNN presets stand beside its CNN
            return Reference(0.7969, "79.69% best epoch (its reduced VGG)", "best_test_acc")
    if data["name"] == "palindrome":
        length = int(data["length"])
        if length == 5:
            return Reference(1.0, "100% at T=5 (its vanilla RNN)")
        if 3 <= length <= 11:
            return Reference(None, "falls as T grows over 3..11 (figure only, no numbers)")
    return None


def part_of(cfg: dict[str, dict[str, Any]]) -> tuple[int, str]:
    """Where an experiment belongs in the course report: (order, section title)."""
    data, model = cfg["data"]["name"], cfg["model"]["name"]
    if data in TOY_DATA:
        return 1, "Part 1: MLP on 2-D data (make_moons)"
    if data in ("cifar10", "imagefolder") and model == "mlp":
        return 2, "Part 1: MLP on CIFAR-10"
    if data in ("cifar10", "imagefolder"):
        return 3, "Part 2: CNN on CIFAR-10"
    if data == "palindrome":
        return 4, "Part 3: recurrent networks on palindromes"
    return 9, "Other experiments"
