"""Summarization: a long description in, a one-line summary out."""
from tasks.base import Decoding, Task, TaskKind, chat, rouge_l
from tasks.plans import EvalPlan, TrainConfig, gain_over_best, percent


def build_messages(text: str, options: dict) -> list[dict]:
    return chat("You write one-line summaries. Reply with a single short line (under 12 words) that says "
                "what the text describes.", f"Summarize in one line:\n\n{text}")


def first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.strip().strip('"').strip()


TASK = Task(
    name="summarize",
    title="Summarization",
    description="Paste a long description; get a one-line summary.",
    kind=TaskKind.GENERATE,
    input_label="Text to summarize",
    placeholder="Paste a paragraph or more…",
    build_messages=build_messages,
    metric=rouge_l,
    postprocess=first_line,
    decoding=Decoding(max_new_tokens=48, temperature=0.0, repetition_penalty=1.1),
    examples=((
        "GNU Wget is a free utility for non-interactive download of files from the Web. It supports HTTP, "
        "HTTPS, and FTP protocols, as well as retrieval through HTTP proxies. It can follow links in HTML "
        "pages and create local versions of remote web sites, fully recreating the directory structure of "
        "the original site.",),
        ("The rain had not stopped for three days. The river rose over its banks on Tuesday night and by "
         "morning the lower streets of the town were under a metre of water. Volunteers filled sandbags "
         "while the council opened the school as a shelter for the forty families who had to leave home.",)),
    sample_inputs=("GNU Wget is a free utility for non-interactive download of files from the Web. It supports "
                   "HTTP, HTTPS and FTP and can follow links in HTML pages.",),
    # The loss is on the answer tokens only; ~15-18 CPU minutes (60 steps left it short of its target).
    # (max_len 256 with long descriptions cut to fit instead of skipped, 44% of them at 160: ROUGE-L 0.270 vs
    # 0.286 on the same 100 held-out descriptions of the earlier positional split; not kept)
    train=TrainConfig(max_steps=110, batch_size=8, max_len=160, lr=3e-4, train_examples=880),
    evaluation=EvalPlan(size=100, metric="rougeL", verdict=gain_over_best("rougeL", 0.05),
                        baseline=lambda splits, rows: lead_baseline_scores(rows),
                        in_words=lambda ft, base: f"its summaries shared about {percent(ft['rougeL'])} of their "
                                                  f"wording with a human-written one (the untuned model: "
                                                  f"{percent(base.get('rougeL', 0))})"),
    about="Trained on software package descriptions: good at one-line summaries of technical texts, weaker on "
          "stories and news.",
)


def _apt_descriptions(lists_dir) -> list[dict]:
    import glob

    records = []
    for path in sorted(glob.glob(str(lists_dir / "*_i18n_Translation-en"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            block: list[str] = []
            for line in f.read().split("\n"):
                if line.strip() == "" and block:
                    records.append(block)
                    block = []
                elif line.strip():
                    block.append(line)
            if block:
                records.append(block)
    out = []
    for block in records:
        pkg = next((b[9:] for b in block if b.startswith("Package: ")), "")
        start = next((i for i, b in enumerate(block) if b.startswith("Description-en: ")), None)
        if start is None:
            continue
        synopsis = block[start][len("Description-en: "):].strip()
        body = []
        for b in block[start + 1:]:
            if not b.startswith(" "):
                break
            body.append("" if b.strip() == "." else b.strip())
        text = " ".join(" ".join(body).split())
        out.append({"package": pkg, "text": text, "target": synopsis})
    return out


def build_data(seed: int = 0) -> "Splits":
    """Debian package long descriptions (>= 40 words) -> their one-line synopsis."""
    from tasks.splits import APT_LISTS, DataMissing, Splits, dedupe, hash_split

    rows = _apt_descriptions(APT_LISTS)
    if not rows:
        raise DataMissing(f"no Debian description lists in {APT_LISTS}: run scripts/install_data.sh")
    rows = [r for r in rows if len(r["text"].split()) >= 40 and r["target"]]
    rows = dedupe(rows, lambda r: r["text"])  # foo and foo-data share one long description
    for r in rows:
        r["options"] = {}
    # by package name, not by position: the lists are fetched fresh and change every few days; a positional
    # shuffle re-dealt every split when 15 packages were added (a test description could land in training)
    train, val, test = hash_split(rows, lambda r: r["package"], seed, test_frac=0.009, val_frac=0.006)
    return Splits(train, val, test, sources=[{
        "name": "Debian bookworm package descriptions (i18n Translation-en)", "license": "per package",
        "count": len(rows)}])


def lead_baseline(text: str, words: int = 10) -> str:
    """First sentence, cut to `words` words: the simple baseline a summary must beat."""
    first = text.split(". ")[0]
    return " ".join(first.split()[:words])


def lead_baseline_scores(rows: list[dict]) -> tuple[str, dict]:
    return "lead: first sentence of the description, cut to 10 words", \
        rouge_l([lead_baseline(r["text"]) for r in rows], [r["target"] for r in rows])
