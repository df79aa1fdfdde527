"""J-Net low-resolution segmentation for MONAI bundles (arXiv 2403.05340).

The package is one house with floors; every import points down (``tests/test_layout.py`` checks it):

- ``processing``: numpy + nibabel pre/post-processing and ``deploy.json``'s schema (Python 3.6, the runner's too)
- product: ``networks``, ``losses``, ``transforms``, ``inferers``, ``handlers``, ``data``, ``checkpoints``,
  ``distributed``, ``errors``, ``provenance`` - what a bundle run imports (``$import jnet`` and the configs' ``_target_``s)
- ``bundles``: the matrix, rendering ``configs/`` into ``bundles/``, the generated-files check
- ``deploy``: export, the standalone runner (its own package in the kit), pack / unpack
- ``tools``: sweep, bench, demo, eval_metrics, synthetic data; ``cli`` on top
"""

__version__ = "0.1.0"

from . import checkpoints, data, distributed, errors, handlers, inferers, losses, networks, processing, provenance, transforms  # noqa: E402  (bundle configs use `jnet.<module>`)
