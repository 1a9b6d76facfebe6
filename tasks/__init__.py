"""Task registry: one module per task, one line here. The UI, the API, training, evaluation and the benchmarks
are all built from it.

Each module defines `TASK` (a tasks.base.Task, with its training recipe and evaluation plan) and
`build_data(seed) -> tasks.splits.Splits`.
"""
from types import ModuleType

from tasks import finnews, generation, qa, sentiment, summarization, translation
from tasks.base import Control, Decoding, Task, TaskInputError, TaskKind, clean_text

MODULES: list[ModuleType] = [
    generation,
    qa,
    sentiment,
    finnews,
    summarization,
    translation,
]
REGISTRY: dict[str, Task] = {}
_BY_NAME: dict[str, ModuleType] = {}


def register(module: ModuleType) -> Task:
    """Add a task module (its TASK and build_data) to the registry; everything built afterwards includes it."""
    task = module.TASK
    if not callable(getattr(module, "build_data", None)):
        raise TypeError(f"task module {module.__name__} has no build_data(seed)")
    REGISTRY[task.name] = task
    _BY_NAME[task.name] = module
    if module not in MODULES:
        MODULES.append(module)
    return task


def unregister(name: str) -> None:
    module = _BY_NAME.pop(name)
    del REGISTRY[name]
    MODULES.remove(module)


def load_order() -> list[str]:
    """The order the server loads tasks in: classifiers first (a second or two to load, milliseconds to
    answer), tasks with a slow warm-up (the QA knowledge-base index, ~9 s) last, so the generation tasks that
    share one base session are not held up behind it."""
    return sorted(REGISTRY, key=lambda n: (REGISTRY[n].kind != TaskKind.CLASSIFY, REGISTRY[n].warmup is not None))


def build_data(name: str, seed: int = 0):
    """The task's dataset: real sources -> dedup -> fixed-seed train/val/test splits."""
    return _BY_NAME[name].build_data(seed)


for _m in list(MODULES):
    register(_m)

__all__ = ["REGISTRY", "MODULES", "load_order", "Task", "TaskKind", "Control", "Decoding", "TaskInputError", "clean_text",
           "build_data", "register", "unregister"]
