from .multistage_loss import MultiStageLoss, level_targets
