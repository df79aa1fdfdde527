"""Synthetic datasets written in the real layouts (Decathlon Task05 prostate, Task01 / BraTS 2021 brain tumour),
so the tests, the demo and the sweep run the real loading code, and real Colin27 brain anatomy in the Task05 layout
(:mod:`.anatomy`). Uses scipy; never imported by a bundle run."""

from .anatomy import load_anatomy_templates, make_anatomy_case, write_anatomy_task
from .brats import make_brats_case, write_brats_task
from .defaults import DATASETS, synthetic_dataset, write_synthetic
from .prostate import make_prostate_case, write_prostate_task
