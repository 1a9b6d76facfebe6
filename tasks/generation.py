"""Text generation: continue a line in a chosen style (a quote, a classical Chinese poem, free text)."""
from typing import TYPE_CHECKING

from tasks.base import Control, Decoding, Task, TaskKind, chat
from tasks.plans import EvalPlan, TrainConfig
from tasks.verse import in_form, verse_constraint

if TYPE_CHECKING:
    from tasks.splits import Splits

POEM, POEM_FREE = "poem (zh)", "poem (zh, free form)"

STYLES = {
    "free": "Continue the user's text naturally.",
    "quote": "Write one short, memorable quotation in the spirit of the user's line.",
    POEM: "用户给出一句诗。请以同样的风格写一首新的中文古诗（四句或八句）。",
}
# The same request; "poem (zh)" is decoded under the regulated form (4 or 8 lines of 5 or 7 characters,
# tasks.verse), the free form is the model's own sense of it (and lets it write irregular ci).
STYLES[POEM_FREE] = STYLES[POEM]


def build_messages(text: str, options: dict) -> list[dict]:
    return chat(f"You are a creative writer. {STYLES[options['style']]}", text)


def constraint(tokenizer, text: str, options: dict):
    """A poem in the regulated style is decoded under that form (tasks.verse); anything else is free."""
    if options.get("style") == POEM:
        return verse_constraint(tokenizer, text)
    return None


def perplexity(mean_nlls: list[float], token_counts: list[int]) -> dict:
    """Held-out perplexity from per-text mean negative log-likelihoods and their token counts."""
    import math

    total = sum(n * c for n, c in zip(mean_nlls, token_counts))
    return {"perplexity": math.exp(total / max(sum(token_counts), 1))}


TASK = Task(
    name="generate",
    title="Text generation",
    description="Give a line; the GPT writes on in the chosen style. Higher temperature means more surprise.",
    kind=TaskKind.GENERATE,
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
    constraint=constraint,
    examples=(
        ("The best way to predict the future is", "quote", 0.8, 0.9, 64),
        ("床前明月光，疑是地上霜。", POEM, 0.7, 0.9, 160),  # a poem is ~80 Qwen tokens
        ("It was a quiet morning in the harbour town when", "free", 0.9, 0.95, 128),
    ),
    sample_inputs=("The best way to predict the future is", "床前明月光，", "Once upon a time"),
    # Qwen2.5-Coder-0.5B: it knows Chinese (SmolLM2 spells each character in 2-3 byte tokens). max_len 320: a
    # poem is ~80 Qwen tokens (~195 SmolLM2 ones); length grouping keeps the padding low. Styles drawn evenly:
    # poems are 4% of the rows, and a run drawn uniformly saw ~40 of them (24% of its poems were in form)
    train=TrainConfig(base="qwen2.5-coder-0.5b", max_steps=120, batch_size=8, max_len=320, lr=2e-4,
                      train_examples=960, group_by_length=True, balance_by="style", time_budget_s=1200.0),
    # perplexity of each held-out continuation (after the user's line); per style too (one style can hide in the
    # pooled figure); and the poems it writes for the held-out first lines, sampled as the app does: in form?
    # Each first line twice: as served (form kept by decoding) and free (the model's own sense of form).
    evaluation=EvalPlan(size=300, metric="perplexity", verdict=lambda t, b, bl: generation_verdict(t, b),
                        scoring="perplexity", group_by="style",
                        sampled_rows=lambda rows: [{**r, "options": {**r["options"], "style": style,
                                                                     "temperature": 0.7, "max_new_tokens": 160}}
                                                   for style in (POEM, POEM_FREE)
                                                   for r in rows if r["options"]["style"] == POEM],
                        extra_scores=lambda rows, answers: poem_form_scores(rows, answers),
                        in_words=lambda ft, base: f"it was {1 - ft['perplexity'] / base['perplexity']:.0%} less "
                                                  "surprised by the real continuation than the untuned model"),
    about="Good at short quotations in the spirit of the line you give. Chinese poems keep the regulated form "
          "(4 or 8 lines of 5 or 7 characters) because decoding holds them to it; left free, about a third of the "
          "model's poems keep it. Free text drifts after a few sentences.",
)


def poem_form_scores(rows: list[dict], answers: list[str]) -> dict:
    """Share of poems in form as served (the regulated style) and as the model writes them (the free form)."""
    out = {}
    for style, key in ((POEM, "poems_in_form"), (POEM_FREE, "poems_in_form_free")):
        mine = [a for r, a in zip(rows, answers) if (r.get("options") or {}).get("style") == style]
        if mine:
            out[key] = sum(map(in_form, mine)) / len(mine)
            out[f"{key}_examples"] = mine[:3]
    out["poems_sampled"] = sum(1 for r in rows if (r.get("options") or {}).get("style") == POEM)
    return out


def generation_verdict(tuned: dict, base: dict) -> str:
    """Perplexity on the continuations below the base model's, and >= 80% of sampled poems in form (as served)."""
    ppl, base_ppl, form = tuned["perplexity"], base["perplexity"], tuned.get("poems_in_form", 0.0)
    ok = ppl < base_ppl and form >= 0.8
    free = (f"; the model alone (form free): {tuned['poems_in_form_free']:.0%}, untuned alone "
            f"{base.get('poems_in_form_free', 0):.0%}" if "poems_in_form_free" in tuned else "")
    return (f"{'met' if ok else 'MISSED'}: perplexity {ppl:.2f} vs base {base_ppl:.2f} (target: below); poems in "
            f"form {form:.0%} of {tuned.get('poems_sampled', 0)} as served (target >= 80%; untuned "
            f"{base.get('poems_in_form', 0):.0%}){free}")


FORTUNE_DIR = "/usr/share/games/fortunes"
QUOTE_FILES = ("wisdom", "literature", "people", "humorists", "fortunes", "love", "science", "work", "education",
               "politics", "men-women", "art", "computers", "food", "pets", "sports", "platitudes", "miscellaneous")


def _fortunes(name: str) -> list[str]:
    import re
    from pathlib import Path

    path = Path(FORTUNE_DIR) / name
    if not path.exists():
        return []
    text = re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(encoding="utf-8", errors="replace"))
    return [e.strip("\n") for e in re.split(r"^%$", text, flags=re.M) if e.strip()]


def _quote(entry: str) -> str | None:
    """A one-paragraph quote without its '-- Author' line, 8-60 words; None for dialogues, lists, verse art."""
    import re

    body = re.split(r"\n\s*--\s", entry)[0]
    if any(c in body for c in "|_<>{}") or re.search(r"^\s*\w+:", body, flags=re.M):
        return None
    q = " ".join(body.split())
    return q if 8 <= len(q.split()) <= 60 else None


def _poem(entry: str) -> tuple[str, str] | None:
    """(first line, whole poem body) of a Tang/Song poem entry; title and author lines dropped."""
    lines = [l.strip() for l in entry.splitlines() if l.strip()]
    body = [l for l in lines if not (l.startswith("《") or l.startswith("题目") or l.startswith("作者"))]
    if len(body) < 2:
        return None
    return body[0], "\n".join(body)


def build_data(seed: int = 0) -> "Splits":
    """Quotes from Debian `fortunes` (the opening words -> the whole quote) and Tang / Song poems from
    `fortunes-zh` (the first line -> the whole poem)."""
    from tasks.splits import DataMissing, Splits, dedupe, split

    quotes = [q for f in QUOTE_FILES for q in map(_quote, _fortunes(f)) if q]
    if not quotes:
        raise DataMissing("Debian fortunes are not installed: run scripts/install_data.sh")
    quotes = dedupe([{"text": " ".join(q.split()[:6]), "target": q, "options": {"style": "quote"}} for q in quotes],
                    lambda r: r["target"])
    # regulated verse only (jueju, lüshi: 4 or 8 lines of 5 or 7 characters; 321 of 408): the style asks for that
    # form, and the 16-line ballads and irregular ci lines taught the model to run on
    poems = [p for f in ("tang300", "song100") for p in map(_poem, _fortunes(f)) if p and in_form(p[1])]
    poems = dedupe([{"text": first, "target": body, "options": {"style": POEM}} for first, body in poems],
                   lambda r: r["target"])
    q_tr, q_va, q_te = split(quotes, seed, n_test=250, n_val=100)
    p_tr, p_va, p_te = split(poems, seed, n_test=50, n_val=20)
    return Splits(q_tr + p_tr, q_va + p_va, q_te + p_te, extra={"leak_key": "target"}, sources=[
        {"name": f"Debian fortunes ({', '.join(QUOTE_FILES)}): quotes of 8-60 words", "license": "BSD",
         "count": len(quotes)},
        {"name": "Debian fortunes-zh tang300 + song100: Tang and Song poems in regulated form", "license": "GPL-3+",
         "count": len(poems)}])
