"""Translation between English and Spanish, and English to Chinese, with the direction chosen by the user."""
from tasks.base import Control, Decoding, Task, TaskKind, chat, chrf
from tasks.plans import EvalPlan, TrainConfig, gain_over_base_per_group, per_group

DIRECTIONS = {
    "English → Spanish": ("English", "Spanish"),
    "Spanish → English": ("Spanish", "English"),
    "English → Chinese": ("English", "Chinese"),
}


def build_messages(text: str, options: dict) -> list[dict]:
    src, tgt = DIRECTIONS[options["direction"]]
    return chat(f"You are a translator. Translate the user's {src} text into {tgt}. "
                f"Reply with the {tgt} translation only.", text)


def first_paragraph(text: str) -> str:
    return text.strip().split("\n\n")[0].strip()


TASK = Task(
    name="translate",
    title="Translation",
    description="Translate English ↔ Spanish or English → Chinese.",
    kind=TaskKind.GENERATE,
    input_label="Text to translate",
    placeholder="Could you tell me when the next bus to the airport leaves?",
    build_messages=build_messages,
    metric=chrf,
    postprocess=first_paragraph,
    controls=(Control("direction", "Direction", "English → Spanish", choices=tuple(DIRECTIONS)),),
    # the 4-gram ban stops the loops a 135M model falls into on long verses ("y me llega: y me llega: ...")
    decoding=Decoding(max_new_tokens=160, temperature=0.0, repetition_penalty=1.05, no_repeat_ngram=4),
    # Held-out chrF of the committed adapter (adapters/translate/metrics.json): both trained directions miss
    # their bar (+20 over the base model); English → Chinese is not trained at all.
    experimental={"English → Spanish": "held-out score 24 of 100, below its target",
                  "Spanish → English": "held-out score 26 of 100, below its target",
                  "English → Chinese": "not trained; the untuned model's output is often garbled"},
    examples=(("Where is the train station?", "English → Spanish"),
              ("El que busca, encuentra.", "Spanish → English"),
              ("Open the file and save your changes.", "English → Chinese")),
    sample_inputs=("Where is the train station?", "Good morning.", "El que busca, encuentra."),
    # ~16 CPU minutes: 150 steps x 8 verse pairs (both directions mixed); 100 steps left the loss still falling
    train=TrainConfig(max_steps=150, batch_size=8, max_len=160, lr=4e-4, train_examples=1200),
    evaluation=EvalPlan(size=80, metric="chrF", verdict=gain_over_base_per_group("chrF", 20.0),
                        group_by="direction", baseline=lambda splits, rows: (
                            "copy the source text", per_group(chrf, rows, [r["text"] for r in rows], "direction")),
                        in_words=lambda ft, base: f"its translations scored {ft['chrF']:.0f} out of 100 for "
                                                  f"closeness to a human translation (the untuned model: "
                                                  f"{base.get('chrF', 0):.0f})"),
    about="A very small model trained on Bible verses: expect the gist of short, simple sentences at best, with "
          "wrong words and an old-fashioned style.",
)


def _verses(module: str) -> dict[str, str]:
    """Reference -> verse text from a SWORD module via diatheke (book by book: one big range stops early)."""
    import re
    import subprocess

    from tasks.splits import DataMissing

    import shutil

    if shutil.which("diatheke") is None:
        raise DataMissing("diatheke is not installed: run scripts/install_data.sh")
    verses: dict[str, str] = {}
    for book in BIBLE_BOOKS:
        out = subprocess.run(["diatheke", "-b", module, "-f", "plain", "-k", book], capture_output=True,
                             text=True).stdout
        for m in re.finditer(r"^(\S.*? \d+:\d+): (.*)$", out, flags=re.M):
            text = " ".join(STRONGS.sub(" ", m.group(2)).split())
            if text:
                verses[m.group(1)] = text
    return verses


# Strong's concordance numbers that the Reina-Valera module leaves in its plain text ("diecisiete <H6240> días")
STRONGS = __import__("re").compile(r"<[HG]\d+>")

BIBLE_BOOKS = ("Genesis Exodus Leviticus Numbers Deuteronomy Joshua Judges Ruth I_Samuel II_Samuel I_Kings "
               "II_Kings I_Chronicles II_Chronicles Ezra Nehemiah Esther Job Psalms Proverbs Ecclesiastes "
               "Song_of_Solomon Isaiah Jeremiah Lamentations Ezekiel Daniel Hosea Joel Amos Obadiah Jonah Micah "
               "Nahum Habakkuk Zephaniah Haggai Zechariah Malachi Matthew Mark Luke John Acts Romans "
               "I_Corinthians II_Corinthians Galatians Ephesians Philippians Colossians I_Thessalonians "
               "II_Thessalonians I_Timothy II_Timothy Titus Philemon Hebrews James I_Peter II_Peter I_John "
               "II_John III_John Jude Revelation_of_John").replace("_", " ").split(" ")


def build_data(seed: int = 0) -> "Splits":
    """World English Bible aligned verse by verse with Reina-Valera 1909; each pair used in both directions."""
    from tasks.splits import Splits, dedupe, group_split

    en, es = _verses("engWEB2015eb"), _verses("spaRV1909eb")
    pairs = [{"ref": ref, "en": en[ref], "es": es[ref]} for ref in en if ref in es]
    pairs = [p for p in pairs if 3 <= len(p["en"].split()) <= 60]
    # either side repeated elsewhere (formulas like "The word of Yahweh came to me, saying") would let
    # a test source text occur in training: keep the first pair of each English and each Spanish text
    pairs = dedupe(dedupe(pairs, lambda p: p["en"]), lambda p: p["es"])
    rows = []
    for p in pairs:  # both directions of one verse stay in one split
        rows.append({"ref": p["ref"], "text": p["en"], "target": p["es"], "options": {"direction": "English → Spanish"}})
        rows.append({"ref": p["ref"], "text": p["es"], "target": p["en"], "options": {"direction": "Spanish → English"}})
    train, val, test = group_split(rows, lambda r: r["ref"], seed, test_frac=0.01, val_frac=0.01)
    return Splits(train, val, test, sources=[{
        "name": "World English Bible (engWEB2015eb) + Reina-Valera 1909 (spaRV1909eb), Debian sword-text-web / "
                "sword-text-sparv via diatheke", "license": "public domain", "count": len(pairs)}])
