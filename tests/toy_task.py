"""A seventh task in one file, as a new task author would write it: echo a word back in capitals.

tests/test_toy_task.py registers it and checks that it appears everywhere a task should, with no other
file changed: a tab, an API endpoint, a training config, an evaluation and a benchmark input.
"""
from tasks.base import Control, Decoding, Task, TaskKind, chat
from tasks.plans import EvalPlan, TrainConfig, at_least
from tasks.splits import Splits


def build_messages(text: str, options: dict) -> list[dict]:
    return chat("Repeat the user's word in capital letters.", f"{options['greeting']}: {text}")


def exact_match(predictions: list[str], references: list[str]) -> dict:
    return {"exact": sum(p.strip() == r for p, r in zip(predictions, references)) / max(len(references), 1)}


TASK = Task(
    name="shout",
    title="Shouting",
    description="Type a word; the GPT shouts it back.",
    kind=TaskKind.GENERATE,
    input_label="A word",
    build_messages=build_messages,
    metric=exact_match,
    controls=(Control("greeting", "Greeting", "Hey", choices=("Hey", "Oi")),),
    decoding=Decoding(max_new_tokens=8),
    examples=(("hello", "Hey"),),
    sample_inputs=("quiet", "loud"),
    train=TrainConfig(max_steps=3, batch_size=2, max_len=64, warmup_steps=1, lr=1e-3, time_budget_s=60),
    evaluation=EvalPlan(size=4, metric="exact", verdict=at_least("exact", 0.9),
                        baseline=lambda splits, rows: ("copy the input",
                                                       exact_match([r["text"] for r in rows],
                                                                   [r["target"] for r in rows]))),
)


def build_data(seed: int = 0) -> Splits:
    words = [f"word{i}" for i in range(24)]
    rows = [{"text": w, "target": w.upper(), "options": {"greeting": "Hey"}} for w in words]
    return Splits(rows[:16], rows[16:20], rows[20:], sources=[{"name": "made up", "license": "none", "count": 24}])
