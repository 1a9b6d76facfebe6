"""The serving tokenizer (runtime.tokenizer, no transformers) gives what transformers' fast tokenizer gives."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["Hello, world!", "  leading and trailing  ", "I don't think it's 'fine' , really ?", "", " ",
         "El tren llega con veinte minutos de retraso.", "请明天早上给我回电话。", "emoji 🤖👍🏽 and ZWJ 👨‍👩‍👧",
         "tab\tnew\nline\r\n", "<|im_end|> typed <|im_start|>user", "\u200b\ufeff zero-width", "ÀÉÎÕÜ ß ﬁ",
         "word " * 300, "Express takes 1-2 days; 1,234.56 USD"]
_rnd = random.Random(0)  # odd Unicode: ASCII, CJK and Latin-1/punctuation code points mixed
TEXTS += ["".join(chr(_rnd.choice([_rnd.randint(32, 126), _rnd.randint(0x4E00, 0x9FFF), _rnd.randint(0xA0, 0x2000)]))
                  for _ in range(_rnd.randint(1, 40))) for _ in range(20)]
CHATS = [[{"role": "user", "content": "hi"}],
         [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Translate: 你好"}]]


def _minilm() -> Path:
    from runtime.embedder import default_model_dir

    return Path(default_model_dir())


def _qwen() -> Path:
    path = ROOT / "models" / "base" / "Qwen2.5-Coder-0.5B-Instruct"
    if not (path / "tokenizer.json").exists():
        pytest.skip("the Qwen base is not prepared on this machine (python -m export prepare)")
    return path


@pytest.fixture(params=["smollm2", "minilm", "qwen"])
def pair(request, tokenizer_dir):
    from transformers import AutoTokenizer

    from runtime.tokenizer import FastTokenizer

    folder = {"smollm2": lambda: tokenizer_dir, "minilm": _minilm, "qwen": _qwen}[request.param]()
    return AutoTokenizer.from_pretrained(folder), FastTokenizer(folder)


def test_encoding_and_truncation_are_the_same(pair):
    hf, ours = pair
    for text in TEXTS:
        for special in (True, False):
            assert ours(text, add_special_tokens=special).input_ids == hf(text, add_special_tokens=special).input_ids
        for limit in (3, 16):
            assert (ours([text, "x"], truncation=True, max_length=limit)["input_ids"]
                    == hf([text, "x"], truncation=True, max_length=limit)["input_ids"])
        mine = ours(text, add_special_tokens=False, return_offsets_mapping=True)
        theirs = hf(text, add_special_tokens=False, return_offsets_mapping=True)
        assert [tuple(o) for o in mine.offset_mapping] == [tuple(o) for o in theirs.offset_mapping]


def test_decoding_is_the_same(pair):
    hf, ours = pair
    for text in TEXTS:
        ids = hf(text).input_ids
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip)
    singles = [[i] for i in range(0, len(hf), max(1, len(hf) // 2000))] + [[i] for i in hf.all_special_ids]
    assert ours.batch_decode(singles) == hf.batch_decode(singles)  # tasks/verse.py reads the vocabulary so


def test_special_tokens_vocabulary_and_chat_template_are_the_same(pair):
    hf, ours = pair
    for name in ("eos_token_id", "pad_token_id", "unk_token_id", "bos_token_id", "all_special_ids"):
        assert getattr(ours, name) == getattr(hf, name), name
    assert len(ours) == len(hf)
    for token in ("<|im_end|>", "<|endoftext|>", "[SEP]", "not-a-token-at-all"):
        assert ours.convert_tokens_to_ids(token) == hf.convert_tokens_to_ids(token)
    assert bool(ours.chat_template) == bool(getattr(hf, "chat_template", None))
    if ours.chat_template:
        for chat in CHATS:
            assert (ours.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
                    == hf.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))


def test_serving_loads_models_without_torch_or_transformers(tiny_lm_export, tiny_classifier_export, embedder_onnx):
    """The point of runtime.tokenizer and the embedder's export: a fresh process that opens an LM, a classifier
    and the retrieval embedder, and answers with each (chat template included), imports neither torch nor
    transformers (a test process has both loaded already, so this runs in its own)."""
    import subprocess
    import sys

    code = f"""
import sys
from pathlib import Path
from runtime.models import _load_tokenizer
from runtime.lm import OnnxCausalLM, OnnxClassifier, Sampling
from runtime.embedder import Embedder
lm_dir, clf_dir = Path({str(tiny_lm_export.path)!r}), Path({str(tiny_classifier_export.path)!r})
lm = OnnxCausalLM(lm_dir / "fp32" / "model.onnx", _load_tokenizer(lm_dir), "fp32", "cpu")
from serving.prompt import render_prompt
prompt = render_prompt(lm.tokenizer, [{{"role": "user", "content": "Hello"}}])
assert prompt.endswith("<|im_start|>assistant\\n"), prompt
assert list(lm.stream(lm.tokenizer(prompt, add_special_tokens=False).input_ids, Sampling(max_new_tokens=3)))
clf = OnnxClassifier(clf_dir / "fp32" / "model.onnx", _load_tokenizer(clf_dir), "fp32", "cpu")
assert clf.predict_proba(["Shares rose"]).shape[0] == 1
emb = Embedder(onnx_folder=Path({str(embedder_onnx)!r}))
assert emb.encode(["Where is my order?"]).shape == (1, 384)
heavy = sorted(m for m in ("torch", "transformers", "sklearn") if m in sys.modules)
print("HEAVY", heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "HEAVY []" in out.stdout, out.stdout
