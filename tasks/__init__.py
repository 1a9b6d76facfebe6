"""Task registry: one module per task, one line here. The UI, the API and training are built from it.

Each module defines `TASK` (a tasks.base.Task) and `build_data(seed) -> tasks.splits.Splits`.
"""
from types import ModuleType

from tasks import finnews, generation, qa, sentiment, summarization, translation
from tasks.base import Control, Decoding, Task, TaskInputError, clean_text

MODULES: tuple[ModuleType, ...] = (
    generation,
    qa,
    sentiment,
    finnews,
    summarization,
    translation,
)
REGISTRY: dict[str, Task] = {m.TASK.name: m.TASK for m in MODULES}
_BY_NAME = {m.TASK.name: m for m in MODULES}


def build_data(name: str, seed: int = 0):
    """The task's dataset: real sources -> dedup -> fixed-seed train/val/test splits."""
    return _BY_NAME[name].build_data(seed)


__all__ = ["REGISTRY", "MODULES", "Task", "Control", "Decoding", "TaskInputError", "clean_text", "build_data"]
