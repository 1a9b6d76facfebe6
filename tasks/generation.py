"""Text generation: continue a line in a chosen style (a quote, a classical Chinese poem, free text)."""
from tasks.base import Control, Decoding, Task, chat

STYLES = {
    "free": "Continue the user's text naturally.",
    "quote": "Write one short, memorable quotation in the spirit of the user's line.",
    "poem (zh)": "用户给出一句诗。请以同样的风格写一首新的中文古诗（四句）。",
}


def build_messages(text: str, options: dict) -> list[dict]:
    return chat(f"You are a creative writer. {STYLES[options['style']]}", text)


def perplexity(mean_nlls: list[float], token_counts: list[int]) -> dict:
    """Held-out perplexity from per-text mean negative log-likelihoods and their token counts."""
    import math

    total = sum(n * c for n, c in zip(mean_nlls, token_counts))
    return {"perplexity": math.exp(total / max(sum(token_counts), 1))}


TASK = Task(
    name="generate",
    title="Text generation",
    description="Give a line; the GPT writes on in the chosen style. Higher temperature means more surprise.",
    kind="generate",
    input_label="Your line",
    placeholder="The best way to predict the future is",
    build_messages=build_messages,
    metric=perplexity,
    controls=(
        Control("style", "Style", "free", choices=tuple(STYLES)),
        Control("temperature", "Temperature", 0.8, minimum=0.0, maximum=1.5, step=0.05),
        Control("top_p", "Top-p", 0.9, minimum=0.05, maximum=1.0, step=0.05),
        Control("max_new_tokens", "Max new tokens", 96, minimum=8, maximum=512, step=8),
    ),
    decoding=Decoding(max_new_tokens=96, temperature=0.8, top_p=0.9, repetition_penalty=1.15),
    examples=(
        ("The best way to predict the future is", "quote", 0.8, 0.9, 64),
        ("床前明月光，疑是地上霜。", "poem (zh)", 0.7, 0.9, 64),
        ("It was a quiet morning in the harbour town when", "free", 0.9, 0.95, 128),
    ),
)
