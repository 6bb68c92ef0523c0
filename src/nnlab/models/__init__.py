"""Models: plain ``nn.Module``s that return logits, built by name through ``registry.py``."""

from __future__ import annotations

from nnlab.models.registry import create_model as build_model
from nnlab.models.registry import model_names

__all__ = ["build_model", "model_names"]
