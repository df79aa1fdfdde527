from .run import run_sweep
