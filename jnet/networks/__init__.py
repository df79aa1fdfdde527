from .elunet import DoubleConv, ELUNet, elunet_for_input, max_pools_for
from .jnet import JNet
from .upscaling_head import UpscalingHead, UpscalingLevel
from .switchable import DEFAULT_SIZES, SizeStatisticsBatchNorm2d, SizeSwitchedBatchNorm2d, SwitchableJNet, size_norms
from .operating_point import operating_size, time_sizes
from .placement import on_device
