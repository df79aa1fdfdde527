from .brats import BratsRegionsd
from .dicom import SaveDicomSegd
from .checks import CheckChannelsd, CheckLabelValuesd, WarnUniformLabelsd, source_file
from .pipeline import (
    GRID_TYPES,
    LOWRES_MODES,
    Activationd,
    AsLabelsd,
    InvertToLabelsd,
    LowResInputd,
    OutputGridd,
    Reorientd,
    SquarePadd,
    ZNormalized,
)
from .slices import RandSliceSamplerd
