"""Translation between English and Spanish, and English to Chinese, with the direction chosen by the user."""
from tasks.base import Control, Decoding, Task, chat, chrf

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
    kind="generate",
    input_label="Text to translate",
    placeholder="In the beginning God created the heavens and the earth.",
    build_messages=build_messages,
    metric=chrf,
    postprocess=first_paragraph,
    controls=(Control("direction", "Direction", "English → Spanish", choices=tuple(DIRECTIONS)),),
    decoding=Decoding(max_new_tokens=160, temperature=0.0, repetition_penalty=1.05),
    examples=(("Where is the train station?", "English → Spanish"),
              ("El que busca, encuentra.", "Spanish → English"),
              ("Open the file and save your changes.", "English → Chinese")),
)
