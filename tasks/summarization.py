"""Summarization: a long description in, a one-line summary out."""
from typing import TYPE_CHECKING

from tasks.base import Decoding, Task, TaskKind, chat, rouge_l
from tasks.plans import EvalPlan, TrainConfig, gain_over_best, percent

if TYPE_CHECKING:
    from tasks.splits import Splits


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
    # no repetition penalty: it counts the prompt's tokens too, and a summary reuses the text's own words
    decoding=Decoding(max_new_tokens=48, temperature=0.0, repetition_penalty=1.0),
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
    # Qwen2.5-Coder-0.5B (untuned it beats SmolLM2 on validation: adapters/summarize/base_comparison.json);
    # ~25-30 CPU minutes: 150 steps x 8, examples drawn evenly from the three sources (Debian descriptions are
    # 94% of the training rows), batches of similar length. (SmolLM2 versions: 110 steps on Debian only.)
    train=TrainConfig(base="qwen2.5-coder-0.5b", max_steps=150, batch_size=8, max_len=192, lr=2e-4,
                      train_examples=1200, balance_by="source", group_by_length=True, time_budget_s=3600.0),
    # a seeded sample balanced across the three sources (Debian descriptions, AppStream apps, man pages)
    evaluation=EvalPlan(size=150, metric="rougeL", verdict=gain_over_best("rougeL", 0.05), group_by="",
                        select_rows=lambda rows, n: eval_sample(rows, n),
                        baseline=lambda splits, rows: lead_baseline_scores(rows),
                        in_words=lambda ft, base: f"its summaries shared about {percent(ft['rougeL'])} of their "
                                                  f"wording with a human-written one (the untuned model: "
                                                  f"{percent(base.get('rougeL', 0))})"),
    about="Qwen2.5-Coder-0.5B trained on software descriptions (Debian packages, app-store summaries, man pages): "
          "good at one-line summaries of technical and product texts, weaker on stories and news.",
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


# held-out (test, val) fractions: Debian's are fixed (its ~34k descriptions give ~290 test rows); the smaller new
# sources use larger ones so the test split mixes domains (>= 100 test rows each). AppStream's are the largest:
# half of its descriptions are Debian's own (deduplicated away), ~930 remain.
DEBIAN_FRACS = (0.009, 0.006)
NEW_FRACS = {"appstream": (0.12, 0.07), "manpages": (0.08, 0.05)}


def _split_of(bucket: float, fracs: tuple[float, float]) -> str:
    return "test" if bucket < fracs[0] else "val" if bucket < fracs[0] + fracs[1] else "train"


def _manpage_key(r: dict, known: set[str], pages_per_deb: dict[str, int]) -> str:
    """The split key of a man page: the package it documents. A page named after a package (grep.1, git.1) goes
    with that package; a package with few pages is one unit; a collection (manpages-dev, coreutils, git-man)
    documents many different commands and functions, so each page (with its other sections in that package) is
    its own unit, "coreutils/ls"."""
    stem = r["doc"].rsplit(".", 1)[0]
    if stem in known:
        return stem
    return r["deb"] if pages_per_deb[r["deb"]] <= 3 else f"{r['deb']}/{stem}"


def eval_sample(rows: list[dict], n: int) -> list[dict]:
    """A fixed, seeded sample of n held-out rows, the same number from each source (as many as there are; rows
    that name no source, e.g. a user's file, count as one source)."""
    from tasks.plans import seeded_balanced

    return seeded_balanced(rows, n, lambda r: r.get("source", ""))


def build_data(seed: int = 0) -> "Splits":
    """Three sources of long text -> one-line summary, split by package across sources:
    Debian package long descriptions (>= 40 words) -> their synopsis; AppStream app descriptions (>= 25 words)
    -> their Summary; man pages' first DESCRIPTION paragraphs (>= 25 words) -> their NAME line (>= 3 words).

    Every row has a split key, the package (see _manpage_key for man pages), and one bucket in [0, 1) from its
    hash. Debian rows split exactly as before (hash_split, 0.9% test, 0.6% val). A key's other rows take the
    Debian split when it is held out; otherwise they take their own split from the same bucket with larger
    fractions (NEW_FRACS), and when that is held out the key's Debian row is dropped from training (not moved:
    Debian's held-out rows stay as they were). So no key is in two splits and no source leaks into another."""
    from collections import Counter

    from tasks.splits import APT_LISTS, DataMissing, Splits, dedupe, hash_bucket, hash_split, norm_key
    from tasks.summary_sources import appstream_pairs, manpage_pairs

    rows = _apt_descriptions(APT_LISTS)
    if not rows:
        raise DataMissing(f"no Debian description lists in {APT_LISTS}: run scripts/install_data.sh")
    rows = [r for r in rows if len(r["text"].split()) >= 40 and r["target"]]
    rows = dedupe(rows, lambda r: r["text"])  # foo and foo-data share one long description
    for r in rows:
        r["source"] = "debian-descriptions"
        r["options"] = {}
    # by package name, not by position: the lists are fetched fresh and change every few days; a positional
    # shuffle re-dealt every split when 15 packages were added (a test description could land in training)
    train, val, test = hash_split(rows, lambda r: r["package"], seed, test_frac=DEBIAN_FRACS[0],
                                  val_frac=DEBIAN_FRACS[1])

    apps, app_info = appstream_pairs()
    pages, man_info = manpage_pairs()
    if not apps or not pages:
        raise DataMissing("no AppStream catalogue in data/appstream or man pages in data/manpages: "
                          "run scripts/install_data.sh")
    apps = [r for r in apps if len(r["text"].split()) >= 25]
    pages = [r for r in pages if len(r["text"].split()) >= 25 and len(r["target"].split()) >= 3]
    known = {r["package"] for r in rows} | {r["package"] for r in apps}
    per_deb = Counter(r["deb"] for r in pages)
    new = []
    for r in apps:
        new.append({"package": r["package"], "doc": r["doc"], "source": "appstream", "text": r["text"],
                    "target": r["target"], "options": {}})
    for r in pages:
        new.append({"package": _manpage_key(r, known, per_deb), "doc": r["doc"], "source": "manpages",
                    "text": r["text"], "target": r["target"], "options": {}})
    seen = {norm_key(r["text"]) for r in rows}  # dedupe by text: against Debian's, then among themselves
    new = dedupe([r for r in new if norm_key(r["text"]) not in seen], lambda r: r["text"])

    debian_split = {r["package"]: name for name, part in (("train", train), ("val", val), ("test", test))
                    for r in part}
    # one decision per key: a key with rows in both new sources uses the larger (AppStream) fractions
    fracs: dict[str, tuple] = {}
    for r in new:
        fracs[r["package"]] = max(fracs.get(r["package"], (0, 0)), NEW_FRACS[r["source"]])
    out: dict[str, list] = {"train": [], "val": [], "test": []}
    dropped = set()
    for r in new:
        b = hash_bucket(seed, r["package"])
        deb = debian_split.get(r["package"])
        where = deb if deb in ("val", "test") else _split_of(b, fracs[r["package"]])
        if deb == "train" and where != "train":
            dropped.add(r["package"])
        out[where].append((b, r))
    parts = {}
    for name, debian_rows in (("train", [r for r in train if r["package"] not in dropped]), ("val", val),
                              ("test", test)):
        # Debian rows first, in hash_split's order; then the new rows by bucket (a stable order)
        parts[name] = debian_rows + [r for _, r in sorted(out[name], key=lambda x: (x[0], x[1]["doc"]))]
    counts = Counter(r["source"] for p in parts.values() for r in p)
    top = sorted(app_info["licenses"].items(), key=lambda kv: -kv[1])[:5]
    return Splits(parts["train"], parts["val"], parts["test"], sources=[
        {"name": "Debian bookworm package descriptions (i18n Translation-en)", "license": "per package",
         "count": counts["debian-descriptions"],
         "detail": f"{len(dropped)} descriptions left out of training: the package's AppStream entry or man page "
                   f"is held out"},
        {"name": app_info["name"], "count": counts["appstream"],
         "license": "per component (metadata_license; Debian's DEP-11 catalogue does not carry it, upstream "
                    "AppStream metadata is usually CC0-1.0)",
         "detail": "software licences (ProjectLicense) of the components read: "
                   + ", ".join(f"{k} {v}" for k, v in top) + ", ..."},
        {"name": man_info["name"], "license": "per package (see each package's copyright file)",
         "count": counts["manpages"]}])


def lead_baseline(text: str, words: int = 10) -> str:
    """First sentence, cut to `words` words: the simple baseline a summary must beat."""
    first = text.split(". ")[0]
    return " ".join(first.split()[:words])


def lead_baseline_scores(rows: list[dict]) -> tuple[str, dict]:
    return "lead: first sentence of the description, cut to 10 words", \
        rouge_l([lead_baseline(r["text"]) for r in rows], [r["target"] for r in rows])
