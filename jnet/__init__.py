"""J-Net low-resolution segmentation for MONAI bundles (arXiv 2403.05340)."""

__version__ = "0.1.0"

from . import checkpoints, data, distributed, errors, handlers, inferers, losses, networks, transforms  # noqa: E402  (bundle configs use `jnet.<module>`)
