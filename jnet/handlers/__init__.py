from .atomic import atomic_save
from .best_model import BestModelSaver
from .resume import ResumeCheckpoint
