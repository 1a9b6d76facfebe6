"""Sentiment classification of a short review or comment: negative or positive."""
from tasks.base import Task, chat, classification_metric

LABELS = ("negative", "positive")


def build_messages(text: str, options: dict) -> list[dict]:
    return chat("You classify the sentiment of reviews. Answer with exactly one word: positive or negative.",
                f"Review: {text}\nIs this review positive or negative?")


TASK = Task(
    name="sentiment",
    title="Sentiment",
    description="Is this review or comment positive or negative? Shows the probability of each class.",
    kind="classify",
    input_label="Review or comment",
    placeholder="A charming, funny film that never outstays its welcome.",
    build_messages=build_messages,
    metric=classification_metric,
    labels=LABELS,
    examples=(("A charming, funny film that never outstays its welcome.",),
              ("Two hours of my life I will never get back.",),
              ("The plot is thin, but the performances carry it.",)),
)
