from .dice_bce import DiceBCELoss
from .multistage_loss import MultiStageLoss, level_targets
from .auxiliary import DistillationLoss, SuperResolutionLoss, TrainingTargets
