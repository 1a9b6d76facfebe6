"""Prompt rendering shared by serving, training and evaluation: one chat template, one set of label ids."""
from __future__ import annotations


def render_prompt(tokenizer, messages: list[dict], answer_prefix: str = "") -> str:
    """The chat prompt: the tokenizer's template where it has one, ChatML otherwise."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        text += "<|im_start|>assistant\n"
    return text + answer_prefix


def label_token_ids(tokenizer, labels: tuple[str, ...]) -> dict[str, list[int]]:
    """First-token ids of each label word's spellings (lower/capitalised, with/without space), shared ids dropped."""
    ids: dict[str, set[int]] = {}
    for label in labels:
        variants = {label, label.capitalize(), " " + label, " " + label.capitalize()}
        ids[label] = {tokenizer(v, add_special_tokens=False).input_ids[0] for v in variants}
    shared = {i for a in labels for b in labels if a != b for i in ids[a] & ids[b]}
    out = {label: sorted(ids[label] - shared) for label in labels}
    if any(not v for v in out.values()):
        raise ValueError(f"label words {labels} share all their first tokens")
    return out
