"""The poem-form constraint: whatever the model's scores, a finished answer is a regulated poem."""
import numpy as np
import pytest

from runtime.lm import Sampling, pick_token
from tasks.verse import VerseForm, in_form, line_length, verse_constraint, vocab_classes

HAN = list("春风明月山水花落人归江天雨夜秋声云")
TOKENS = HAN + ["明月", "春风", "落花人", "山水间", "，", "。", "。\n", "！", "\n", "\n\n", "the", " 月", "」",
                "月」", "，」", "<eos>"]


class ToyTokenizer:
    """Just what the constraint reads of a tokenizer: one token's text at a time, and its special ids."""

    name_or_path = "toy-verse"
    eos_token_id = len(TOKENS) - 1
    unk_token_id = None
    all_special_ids = [len(TOKENS) - 1]

    def __len__(self):
        return len(TOKENS)

    def batch_decode(self, seqs, skip_special_tokens=False):
        return ["".join(TOKENS[i] for i in s) for s in seqs]

    def convert_tokens_to_ids(self, t):
        return TOKENS.index(t) if t in TOKENS else None

    def decode(self, ids):
        return "".join(TOKENS[i] for i in ids if i != self.eos_token_id)


def _write(tok, text, rng, steps=200, temperature=1.0):
    s = Sampling(temperature=temperature, constraint=verse_constraint(tok, text))
    out = []
    for _ in range(steps):
        t = pick_token(rng.normal(0, 3, len(tok)), s, out, rng)
        if t == tok.eos_token_id:
            return tok.decode(out), True
        out.append(t)
    return tok.decode(out), False


def test_vocab_classes_sort_tokens():
    c = vocab_classes(ToyTokenizer())
    assert c.han[TOKENS.index("落花人")] == 3 and c.han[TOKENS.index(" 月")] == 0  # a space is not a character
    assert c.mark[TOKENS.index("。\n")] and not c.mark[TOKENS.index("，」")]  # nothing after the mark but space
    assert c.space[TOKENS.index("\n\n")] and not c.han[TOKENS.index("<eos>")]


def test_every_finished_answer_is_in_form_whatever_the_scores():
    rng = np.random.default_rng(0)
    tok = ToyTokenizer()
    poems = [_write(tok, "", rng) for _ in range(300)]
    assert all(done for _, done in poems)  # it always ends, within 8 lines
    assert all(in_form(p) for p, _ in poems)
    lines = {len(p.replace("\n", "").replace("，", "。").replace("！", "。").strip("。").split("。")) for p, _ in poems}
    chars = {line_length(p) for p, _ in poems}
    assert lines == {4, 8} and chars == {5, 7}  # the model still chooses the length and the size


def test_the_users_line_sets_the_line_length():
    rng = np.random.default_rng(1)
    tok = ToyTokenizer()
    for _ in range(50):
        poem, done = _write(tok, "床前明月光，疑是地上霜。", rng)
        assert done and in_form(poem) and line_length(poem) == 5
    assert line_length("Hello") is None and line_length("床前明月光，疑是地上霜霜。") is None


def test_the_constraint_holds_with_greedy_and_bans():
    tok = ToyTokenizer()
    logits = np.zeros(len(tok))
    logits[TOKENS.index("the")] = 50.0  # the model wants English
    logits[TOKENS.index("春风")] = 10.0
    s = Sampling(temperature=0.0, constraint=VerseForm(vocab_classes(tok), {tok.eos_token_id}))
    first = pick_token(logits, s, [], np.random.default_rng(0))
    assert TOKENS[first] == "春风"
    # only a ban-listed token is left: the form wins over the ban
    s = Sampling(temperature=0.0, constraint=VerseForm(vocab_classes(tok), {tok.eos_token_id}, chars=5))
    s.constraint.open = 5
    marks = [TOKENS.index(m) for m in ("，", "。", "。\n", "！")]
    assert pick_token(logits, s, [], np.random.default_rng(0), banned=marks) in marks


@pytest.mark.parametrize("style", ["poem (zh)", "poem (zh, free form)", "quote", "free"])
def test_generation_task_applies_the_form_only_to_regulated_poems(style):
    from tasks.generation import TASK

    c = TASK.constraint(ToyTokenizer(), "床前明月光，", TASK.options({"style": style}))
    assert (c is not None) == (style == "poem (zh)")
