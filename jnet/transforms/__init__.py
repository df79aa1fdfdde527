from .brats import BratsRegionsd, RegionsToLabelsd
from .checks import CheckChannelsd, CheckLabelValuesd, source_file
from .lowres import LOWRES_MODES, LowResInputd
from .slices import RandSliceSamplerd, SquarePadd
