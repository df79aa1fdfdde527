"""Read a bundle's configs from Python, as ``monai.bundle run`` does: its parser, its network, parameter counts."""

from __future__ import annotations

import os
from collections.abc import Sequence

from monai.bundle import ConfigParser
from torch import nn

__all__ = ["bundle_parser", "bundle_network", "count_parameters"]


def bundle_parser(bundle_dir: str, overrides: Sequence[str] = (), base: str = "configs/train.json") -> ConfigParser:
    """A ConfigParser over ``base`` merged with ``overrides`` (paths relative to the bundle), as ``monai.bundle run``."""
    parser = ConfigParser()
    parser.read_config([os.path.join(bundle_dir, base)] + [os.path.join(bundle_dir, f) for f in overrides])
    parser.read_meta(os.path.join(bundle_dir, "configs", "metadata.json"))
    parser["bundle_root"] = bundle_dir
    return parser


def bundle_network(bundle_dir: str, overrides: Sequence[str] = (), base: str = "configs/train.json") -> nn.Module:
    """The bundle's ``network_def``, freshly instantiated (random weights)."""
    return bundle_parser(bundle_dir, overrides, base).get_parsed_content("network_def")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
