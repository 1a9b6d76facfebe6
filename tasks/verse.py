"""Regulated Chinese verse (jueju, lüshi): the form check, and a decoding constraint that keeps a poem in form.

A reader counts a poem's lines as the clauses between punctuation marks; a regulated poem has 4 or 8 of them,
all 5 or all 7 Han characters long. The constraint is applied token by token (runtime.lm.pick_token): only
tokens that keep the answer on that path may be sampled, and the model still picks among them by its own
probabilities. The model's own rate of poems in form is measured with the constraint off (the "free" form).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import numpy as np

CLAUSE_END = "，。！？；、,.!?;:：\n"
MARKS = "，。！？；"  # what a clause may end with under the constraint
LENGTHS = (5, 7)  # characters a line
LINE_COUNTS = (4, 8)
_HAN = "\u4e00-\u9fff"


def poem_lines(text: str) -> list[str]:
    """A Chinese poem's lines as a reader counts them: the clauses between punctuation marks, Han characters only."""
    clauses = re.split(f"[{CLAUSE_END}]", text)
    return [c for c in ("".join(re.findall(f"[{_HAN}]", c)) for c in clauses) if c]


def in_form(text: str) -> bool:
    """A jueju or lüshi: 4 or 8 lines, all 5 or all 7 characters, and nothing but the poem."""
    lines = poem_lines(text)
    leftover = re.sub(f"[{_HAN}\\s{CLAUSE_END}]", "", text)
    return (len(lines) in LINE_COUNTS and len({len(l) for l in lines}) == 1 and len(lines[0]) in LENGTHS
            and not leftover)


def line_length(text: str) -> int | None:
    """5 or 7 when every line of `text` (the user's opening line) has that many characters, else None."""
    lengths = {len(l) for l in poem_lines(text)}
    return lengths.pop() if len(lengths) == 1 and lengths <= set(LENGTHS) else None


@dataclass(frozen=True)
class VocabClasses:
    """What each token of a vocabulary is, for the constraint: its text decoded one token at a time."""

    han: np.ndarray  # int: number of Han characters when the token is nothing else, else 0
    mark: np.ndarray  # bool: one of MARKS, then nothing but whitespace ("，", "。\n")
    space: np.ndarray  # bool: whitespace only (a line break after a mark)


_classes: dict[tuple, VocabClasses] = {}
_classes_lock = threading.Lock()


def vocab_classes(tokenizer) -> VocabClasses:
    """Computed once per vocabulary (about a second for Qwen's 152k tokens)."""
    key = (getattr(tokenizer, "name_or_path", ""), len(tokenizer))
    with _classes_lock:
        if key not in _classes:
            texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=False)
            special = set(tokenizer.all_special_ids)
            han = np.zeros(len(texts), np.int16)
            mark = np.zeros(len(texts), bool)
            space = np.zeros(len(texts), bool)
            pure_han = re.compile(f"[{_HAN}]+")
            for i, t in enumerate(texts):
                if i in special or not t:
                    continue
                if pure_han.fullmatch(t):
                    han[i] = len(t)
                elif t[0] in MARKS and not t[1:].strip():
                    mark[i] = True
                elif not t.strip() and "\ufffd" not in t:
                    space[i] = True
            _classes[key] = VocabClasses(han, mark, space)
        return _classes[key]


class VerseForm:
    """Keeps a generated answer a regulated poem: clauses of n Han characters (n = 5 or 7: the user's line's
    length when it has one, else whatever the first clause ends at), each closed by a mark and optionally a line
    break; after 4 clauses the answer may end, after 8 it must."""

    def __init__(self, classes: VocabClasses, end_ids: set[int], chars: int | None = None):
        self.c = classes
        self.end = np.asarray(sorted(end_ids), np.int64)
        self.chars = chars
        self.open = 0  # characters in the clause being written
        self.closed = 0  # clauses finished
        self.after_mark = False

    def allowed(self) -> np.ndarray:
        c = self.c
        longest = self.chars or max(LENGTHS)
        ok = (c.han > 0) & (c.han <= longest - self.open) if self.closed < max(LINE_COUNTS) else np.zeros_like(c.mark)
        if (self.open == self.chars) if self.chars else (self.open in LENGTHS):
            ok |= c.mark
        if self.open == 0 and self.after_mark:
            ok |= c.space
        if self.open == 0 and self.closed in LINE_COUNTS:
            ok[self.end] = True
        return ok

    def advance(self, token: int) -> None:
        if self.c.han[token]:
            self.open += int(self.c.han[token])
            self.after_mark = False
        elif self.c.mark[token]:
            self.chars = self.chars or self.open
            self.open, self.closed, self.after_mark = 0, self.closed + 1, True
        elif self.c.space[token]:
            self.after_mark = False


def verse_constraint(tokenizer, text: str) -> VerseForm:
    """A fresh constraint for one answer to the opening line `text`."""
    from runtime.lm import stop_token_ids

    return VerseForm(vocab_classes(tokenizer), stop_token_ids(tokenizer), line_length(text))
