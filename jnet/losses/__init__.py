from .dice_bce import DiceBCELoss
from .dice_ce import SoftmaxDiceCELoss
from .multistage_loss import MultiStageLoss, level_targets
from .auxiliary import DistillationLoss, SuperResolutionLoss, TrainingTargets
