"""A bundle's network with trained weights: the overrides it was trained with, and a checkpoint that must fit."""

from __future__ import annotations

import ast
import json
import os
import pickle

import torch
from monai.bundle import ConfigParser
from torch import nn

from jnet.errors import InputError

__all__ = ["parse_overrides", "apply_overrides", "load_weights", "require_weights_file"]


def parse_overrides(overrides: dict | str | None) -> dict:
    """``{"features": 4}`` from a dict, a JSON or Python-literal string, or None (python-fire passes either)."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(overrides)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, dict):
            return value
    raise InputError(f"--overrides must be a dict such as \"{{'features': 4}}\", got {overrides!r}.")


def apply_overrides(parser: ConfigParser, overrides: dict, source: str) -> None:
    """Set top-level config values, as ``monai.bundle run --key value`` does; unknown keys are an error."""
    for key, value in overrides.items():
        if key not in parser:
            raise InputError(f"{source}: override '{key}' is not a key of the config.")
        parser[key] = value


def require_weights_file(model_file: str) -> None:
    if not os.path.isfile(model_file):
        raise InputError(f"{model_file}: no such weights file (train the bundle first, or pass --model_file).")


def load_weights(network: nn.Module, model_file: str) -> nn.Module:
    """Load a ``CheckpointSaver`` checkpoint (a state dict, or ``{"model": state dict}``) into ``network``; a
    checkpoint that does not fit (trained with other overrides) is an :class:`InputError` naming the file."""
    require_weights_file(model_file)
    try:
        state = torch.load(model_file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's message goes on to suggest weights_only=False: not here
        raise InputError(
            f"{model_file}: not a PyTorch checkpoint of weights (refused unread: it is another kind of file, or "
            "holds objects that only an unsafe load could rebuild)."
        ) from error
    except Exception as error:
        raise InputError(f"{model_file}: not a PyTorch checkpoint ({str(error).strip().splitlines()[0]}).") from error
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        lines = str(error).strip().splitlines()
        detail = (lines[1] if len(lines) > 1 else lines[0]).strip().rstrip(".")
        raise InputError(
            f"{model_file}: the weights do not fit the bundle's network_def ({detail}); "
            f"pass the overrides it was trained with{_features_hint(network, state)}."
        ) from error
    return network.eval()


def _features_hint(network: nn.Module, state: dict) -> str:
    """``, here --overrides "{'features': N}"`` when the checkpoint's first convolution has ``N`` filters and the
    network's another (``features`` is the backbone's first width), else a generic example."""
    expected = next(((key, value) for key, value in network.state_dict().items() if value.ndim == 4), None)
    saved = state.get(expected[0]) if expected is not None and isinstance(state, dict) else None
    if isinstance(saved, torch.Tensor) and saved.ndim == 4 and saved.shape[0] != expected[1].shape[0]:
        return f", here --overrides \"{{'features': {int(saved.shape[0])}}}\" (its first convolution has {int(saved.shape[0])} filters)"
    return ", e.g. --overrides \"{'features': 4}\""
