from .atomic import atomic_save
from .best_model import BestModelSaver
from .resume import ResumeCheckpoint
from .size_statistics import SizeStatisticsCalibration, calibrate_size_statistics
from .validation import IntervalAndLastValidation, validation_epochs
