"""Summarization: a long description in, a one-line summary out."""
from tasks.base import Decoding, Task, chat, rouge_l


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
    kind="generate",
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
)
