"""Financial-news classification: is a headline negative, neutral or positive for the company or market it names?"""
from tasks.base import Task, chat, classification_metric

LABELS = ("negative", "neutral", "positive")


def build_messages(text: str, options: dict) -> list[dict]:
    return chat("You are a financial analyst. For the company or market a headline names, say whether the "
                "news is positive, negative or neutral. Answer with exactly one word.",
                f"Headline: {text}\nPositive, negative or neutral?")


TASK = Task(
    name="finnews",
    title="Financial news",
    description="Is a business headline good, bad or neutral news for the company or market it names?",
    kind="classify",
    input_label="Headline",
    placeholder="Tesco profits jump 20% as shoppers return to stores",
    build_messages=build_messages,
    metric=classification_metric,
    labels=LABELS,
    examples=(("Tesco profits jump 20% as shoppers return to stores",),
              ("Airline shares slump as travel bans spread",),
              ("Bank of England holds interest rates at 0.1%",)),
)
