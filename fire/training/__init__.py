"""Training: the loop (``trainer``), the optimizer, the device mesh and what a run reports.

from fire.training import train
train(fire.config.from_axes("pe=fire,smoke"), "runs/smoke")
"""

from fire.training.trainer import TrainingSetup, build, compile_step, global_batch, train

__all__ = ["TrainingSetup", "build", "compile_step", "global_batch", "train"]
