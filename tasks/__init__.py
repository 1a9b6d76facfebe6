"""Task registry: one module per task, one line here. The UI and the API are built from this dict."""
from tasks import finnews, generation, qa, sentiment, summarization, translation
from tasks.base import Control, Decoding, Task, TaskInputError, clean_text

REGISTRY: dict[str, Task] = {t.name: t for t in (
    generation.TASK,
    qa.TASK,
    sentiment.TASK,
    finnews.TASK,
    summarization.TASK,
    translation.TASK,
)}

__all__ = ["REGISTRY", "Task", "Control", "Decoding", "TaskInputError", "clean_text"]
