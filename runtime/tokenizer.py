"""The serving tokenizer: a saved Hugging Face fast tokenizer read with the `tokenizers` library and jinja2 alone.

Why not transformers' AutoTokenizer: importing it pulls in torch and scikit-learn (~5 s on 2 cores, measured with
`python -X importtime`), all on the first tab's critical path at start, and ~0.3 GB of resident memory that
serving never uses. A folder written by `save_pretrained` holds everything needed: tokenizer.json is the exact
backend transformers wraps (its post-processor already rewritten for the model's BOS/EOS rules), and
tokenizer_config.json / special_tokens_map.json / chat_template.jinja give the special tokens, the decode clean-up
rule and the chat template. This class implements the part of the PreTrainedTokenizerFast interface that serving
uses, with the same results (tests/runtime/test_tokenizer.py compares the two on both bases and odd input);
training and evaluation keep using transformers."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from tokenizers import Tokenizer

SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class Encoded(dict):
    """What calling the tokenizer returns: {"input_ids": ...}, also readable as `.input_ids` (as BatchEncoding)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def _content(value):
    return value.get("content") if isinstance(value, dict) else value


def clean_up_tokenization(text: str) -> str:
    """transformers' clean-up of spaces before punctuation and English contractions (when the config asks for it)."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


def _compile_template(source: str):
    """The chat template compiled as transformers compiles it: sandboxed, trim/lstrip blocks, loop controls, a
    non-escaping tojson, raise_exception and strftime_now."""
    import jinja2
    import jinja2.ext  # not imported by `import jinja2`
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


class FastTokenizer:
    """A saved fast tokenizer without transformers: encode, decode, special tokens and the chat template."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.name_or_path = str(folder)
        self.backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # save_pretrained leaves truncation/padding off in tokenizer.json; make sure, as they would change encode
        self.backend.no_truncation()
        self.backend.no_padding()
        config = self._read(folder / "tokenizer_config.json")
        special = {**{k: config[k] for k in (*SPECIAL_KEYS, "additional_special_tokens") if k in config},
                   **self._read(folder / "special_tokens_map.json")}
        self.special_tokens_map = {}
        for key in (*SPECIAL_KEYS, "additional_special_tokens"):
            value = special.get(key)
            if key == "additional_special_tokens":
                if value:
                    self.special_tokens_map[key] = [_content(v) for v in value]
            elif _content(value) is not None:
                self.special_tokens_map[key] = _content(value)
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        self.model_max_length = config.get("model_max_length")
        template = folder / "chat_template.jinja"
        self.chat_template = template.read_text(encoding="utf-8") if template.exists() else config.get("chat_template")
        self._template = None
        self._vocab_size = self.backend.get_vocab_size(with_added_tokens=True)
        self._num_special = self.backend.num_special_tokens_to_add(False)

    @staticmethod
    def _read(path: Path) -> dict:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def __len__(self) -> int:
        return self._vocab_size

    def _token_id(self, key: str) -> int | None:
        token = self.special_tokens_map.get(key)
        return None if token is None else self.convert_tokens_to_ids(token)

    @property
    def eos_token_id(self):
        return self._token_id("eos_token")

    @property
    def bos_token_id(self):
        return self._token_id("bos_token")

    @property
    def pad_token_id(self):
        return self._token_id("pad_token")

    @property
    def unk_token_id(self):
        return self._token_id("unk_token")

    @property
    def all_special_ids(self) -> list[int]:
        tokens = []
        for value in self.special_tokens_map.values():
            for token in (value if isinstance(value, list) else [value]):
                if token not in tokens:
                    tokens.append(token)
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            tid = self.backend.token_to_id(tokens)
            return tid if tid is not None else self.unk_token_id
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def _encoding(self, text: str, add_special_tokens: bool, max_length: int | None):
        if max_length is None:
            return self.backend.encode(text, add_special_tokens=add_special_tokens)
        # as the backend truncates: the text's own tokens first, leaving room for the special tokens added after
        enc = self.backend.encode(text, add_special_tokens=False)
        enc.truncate(max(max_length - (self._num_special if add_special_tokens else 0), 0))
        return self.backend.post_process(enc, None, True) if add_special_tokens else enc

    def __call__(self, text, add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None, return_offsets_mapping: bool = False) -> Encoded:
        limit = max_length if truncation else None
        encs = [self._encoding(t, add_special_tokens, limit) for t in ([text] if isinstance(text, str) else text)]
        out = Encoded(input_ids=[e.ids for e in encs])
        if return_offsets_mapping:
            out["offset_mapping"] = [list(e.offsets) for e in encs]
        return Encoded({k: v[0] for k, v in out.items()}) if isinstance(text, str) else out

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._encoding(text, add_special_tokens, None).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        if isinstance(ids, int):
            ids = [ids]
        text = self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        return clean_up_tokenization(text) if self.clean_up_tokenization_spaces else text

    def batch_decode(self, sequences, skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(s, skip_special_tokens=skip_special_tokens) for s in sequences]

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False, add_generation_prompt: bool = False):
        if not self.chat_template:
            raise ValueError(f"{self.name_or_path} has no chat template")
        if self._template is None:
            self._template = _compile_template(self.chat_template)
        text = self._template.render(messages=messages, tools=None, documents=None,
                                     add_generation_prompt=add_generation_prompt, **self.special_tokens_map)
        return self.encode(text, add_special_tokens=False) if tokenize else text
