"""Trained weights into a bundle's network (export, packing, fine-tuning): the overrides they were trained with, a
checkpoint that must fit, and one-line errors naming the file when it does not."""

from __future__ import annotations

import ast
import json
import logging
import os
import pickle

import torch
from monai.bundle import ConfigParser
from torch import nn

from jnet.errors import InputError

__all__ = ["parse_overrides", "apply_overrides", "load_weights", "frozen_network", "require_weights_file", "mismatch_detail"]


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


def require_weights_file(model_file: str, option: str = "--model_file") -> None:
    """:class:`InputError` unless ``model_file`` exists; ``option`` is the override that names another file."""
    if not os.path.isfile(model_file):
        hint = "train the bundle first, or pass --model_file" if option == "--model_file" else f"check {option}"
        raise InputError(f"{model_file}: no such weights file ({hint}).")


def load_weights(network: nn.Module, model_file: str, option: str = "--model_file") -> nn.Module:
    """Load a ``CheckpointSaver`` checkpoint (a state dict, or ``{"model": state dict}``) into ``network``; a
    missing file, a file that is not a state dict, or weights that do not fit (trained with other overrides) are an
    :class:`InputError` naming the file. ``option``: the override the file came from, for the message."""
    require_weights_file(model_file, option)
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
    if not isinstance(state, dict):
        raise InputError(f"{model_file}: holds a {type(state).__name__}, not a state dict of weights.")
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        detail = mismatch_detail(error)
        if "were trained for" in detail:  # the input size (jnet.networks.JNet keeps it): the detail says what to do
            raise InputError(f"{model_file}: {detail}.") from error
        raise InputError(
            f"{model_file}: the weights do not fit the bundle's network_def ({detail}); "
            f"pass the overrides it was trained with{_features_hint(network, state)}."
        ) from error
    logging.getLogger(__name__).info(f"{model_file}: weights loaded into the network")
    return network.eval()


def frozen_network(network: nn.Module, model_file: str, device: str | torch.device = "cpu", option: str = "--teacher_file") -> nn.Module:
    """``network`` with the weights of ``model_file`` (:func:`load_weights`), on ``device``, in eval mode and with
    no gradients: a distillation teacher."""
    load_weights(network, model_file, option)
    return network.to(device).eval().requires_grad_(False)


def mismatch_detail(error: BaseException) -> str:
    """The informative line of ``load_state_dict``'s multi-line error (``Error(s) in loading state_dict for X:``
    followed by ``size mismatch for ...`` / ``Missing key(s) ...``), stripped: one line for a user message."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    return (lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict") else lines[0]).rstrip(".")


def _features_hint(network: nn.Module, state: dict) -> str:
    """Which ``features`` the checkpoint has when its first convolution's filter count differs from the network's
    (``features`` is the backbone's first width), in both override forms; else a generic example."""
    expected = next(((key, value) for key, value in network.state_dict().items() if value.ndim == 4), None)
    saved = state.get(expected[0]) if expected is not None and isinstance(state, dict) else None
    if isinstance(saved, torch.Tensor) and saved.ndim == 4 and saved.shape[0] != expected[1].shape[0]:
        n = int(saved.shape[0])
        return (
            f", here features {n} (its first convolution has {n} filters): --features {n} in a bundle command, "
            f"--overrides \"{{'features': {n}}}\" for jnet export and pack"
        )
    return ", e.g. --features 4 in a bundle command, --overrides \"{'features': 4}\" for jnet export and pack"
