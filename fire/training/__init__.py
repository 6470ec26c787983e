"""Training: the loop (``loop``), its checks (``checks``), the step it runs (``step``),
resuming (``resume``), stopping at a step boundary (``preemption``), validation, the
optimizer, the device mesh and what a run reports (``metrics``).

from fire.training import train
train(fire.config.from_axes("pe=fire,smoke"), "runs/smoke")
"""

from fire.training.loop import train
from fire.training.step import TrainingSetup, build, compile_step, global_batch

__all__ = ["TrainingSetup", "build", "compile_step", "global_batch", "train"]
