"""LoRA adapters applied at run time to one shared base graph: equal to PyTorch + PEFT, switched per request."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROMPTS, TOKENS, run_together, torch_greedy as _torch_greedy


@pytest.fixture(scope="session")
def lora_export(tiny_lm_dir, onnx_root):
    from export.lora_graph import export_lora_base

    return export_lora_base(tiny_lm_dir, onnx_root, ["fp32", "int8"])


@pytest.fixture(scope="session")
def base_lm(lora_export, tokenizer):
    from runtime.lm import OnnxCausalLM

    return OnnxCausalLM(lora_export.onnx("fp32"), tokenizer, "fp32", "cpu")


def test_lora_export_is_checked_and_rank_zero_is_the_base(lora_export, tiny_lm_export, tokenizer):
    """The patched graph with no adapter computes the base: its checks passed, and its int8 logits equal the
    un-patched int8 graph's (same quantized weights; an empty MatMul adds zeros)."""
    from export.onnx_export import _ort_full_logits
    from runtime.adapters import no_adapter
    from runtime.providers import open_session

    manifest = json.loads((lora_export.path / "manifest.json").read_text())
    assert manifest["lora_slots"] == 2 * 7 and all(c["passed"] for c in manifest["checks"].values())
    ids = tokenizer(PROMPTS[1]).input_ids
    plain, _ = open_session(tiny_lm_export.onnx("int8"), "int8", "cpu")
    patched, _ = open_session(lora_export.onnx("int8"), "int8", "cpu")
    want = _ort_full_logits(plain, ids, "lm")
    got = _ort_full_logits(patched, ids, "lm", no_adapter(patched))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_adapters_switched_per_request_equal_pytorch_peft(tiny_lm_dir, adapters, base_lm, tokenizer):
    """fp32: greedy tokens through the one base session equal PyTorch + PEFT, adapter chosen per request."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from runtime.adapters import read_adapter
    from runtime.lm import Sampling

    torch_base = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    peft = PeftModel.from_pretrained(torch_base, adapters["a"], adapter_name="a")
    peft.load_adapter(adapters["b"], adapter_name="b")
    peft.eval()
    views = {name: base_lm.with_adapter(read_adapter(folder, base_lm.session, name))
             for name, folder in adapters.items()}
    stop = base_lm.stop_ids
    outputs = {}
    for name in ["a", None, "b", "a", None, "b"]:  # switching back and forth on one session
        for prompt in PROMPTS:
            ids = tokenizer(prompt).input_ids
            got = (views[name] if name else base_lm).generate(ids, Sampling(max_new_tokens=TOKENS))
            if name:
                peft.set_adapter(name)
                want = _torch_greedy(peft, tokenizer, ids, stop)
            else:
                with peft.disable_adapter():
                    want = _torch_greedy(peft, tokenizer, ids, stop)
            assert got == want, (name, prompt)
            outputs.setdefault(name, []).append(got)
    # each adapter really changes the answers (or the test above could pass with the adapter ignored)
    assert outputs["a"][:3] != outputs[None][:3] and outputs["b"][:3] != outputs[None][:3]
    assert outputs["a"][:3] != outputs["b"][:3]


def test_two_concurrent_streams_each_get_their_own_adapter(adapters, base_lm, tokenizer):
    from runtime.adapters import read_adapter
    from runtime.lm import Sampling

    views = {name: base_lm.with_adapter(read_adapter(folder, base_lm.session, name))
             for name, folder in adapters.items()}
    ids = tokenizer(PROMPTS[0]).input_ids
    alone = {name: view.generate(ids, Sampling(max_new_tokens=TOKENS)) for name, view in views.items()}
    assert alone["a"] != alone["b"]
    got = run_together(["a", "b", "a", "b"],
                       lambda name: [list(views[name].stream(ids, Sampling(max_new_tokens=TOKENS))) for _ in range(3)])
    assert got == [[alone[name]] * 3 for name in ("a", "b", "a", "b")]


def test_adapters_that_do_not_fit_the_graph_are_refused(tiny_lm_dir, adapters, base_lm, tmp_path):
    from safetensors.numpy import load_file, save_file

    from runtime.adapters import AdapterMismatch, read_adapter

    # a trained head (modules_to_save) changes base weights: only a merged export can serve it
    head = tmp_path / "head"
    head.mkdir()
    (head / "adapter_config.json").write_text((adapters["a"] / "adapter_config.json").read_text())
    tensors = load_file(str(adapters["a"] / "adapter_model.safetensors"))
    save_file({**tensors, "base_model.model.lm_head.modules_to_save.weight": np.zeros((4, 4), np.float32)},
              str(head / "adapter_model.safetensors"))
    with pytest.raises(AdapterMismatch, match="not a LoRA factor"):
        read_adapter(head, base_lm.session)
    # factors of another base's width
    wide = tmp_path / "wide"
    wide.mkdir()
    (wide / "adapter_config.json").write_text((adapters["a"] / "adapter_config.json").read_text())
    save_file({k: np.zeros((v.shape[0], v.shape[1] * 2) if "lora_A" in k else (v.shape[0] * 2, v.shape[1]),
                           np.float32) for k, v in tensors.items()}, str(wide / "adapter_model.safetensors"))
    with pytest.raises(AdapterMismatch, match="another base"):
        read_adapter(wide, base_lm.session)


def test_model_set_swaps_an_adapter_version_without_reloading_the_base(tiny_lm_dir, adapters, lora_export,
                                                                      tmp_path):
    from export.finetuned import shared_adapter_version
    from runtime import registry
    from runtime.models import ModelSet

    models = tmp_path / "models"
    first = shared_adapter_version(adapters["a"], "summarize-aaaa", tiny_lm_dir, models, "")
    checks = json.loads(next(Path(first.adapter).glob("checks-*.json")).read_text())
    assert checks["fp32"]["kv_cache_greedy_equal"] and checks["int8"]["passed"]
    registry.register(models, "summarize", first)
    registry.register(models, "translate", shared_adapter_version(adapters["b"], "translate-bbbb", tiny_lm_dir,
                                                                  models, ""))
    ms = ModelSet(models, provider="cpu", precision="fp32")
    one, other = ms.load("summarize"), ms.load("translate")
    assert one.model.session is other.model.session  # one base in memory for both tasks
    assert (one.model.lora.name, other.model.lora.name) == ("summarize-aaaa", "translate-bbbb")
    registry.register(models, "summarize", shared_adapter_version(adapters["b"], "summarize-bbbb", tiny_lm_dir,
                                                                  models, ""))
    assert ms.refresh() == ["summarize"]
    swapped = ms.get("summarize")
    assert swapped.model.session is one.model.session and swapped.model.lora.name == "summarize-bbbb"
    assert "fine-tuned" in swapped.describe


# ---- continuous batching (runtime/decoder.py) ------------------------------------------------------------------

@pytest.fixture
def decoder(base_lm):
    from runtime.decoder import ContinuousDecoder

    return ContinuousDecoder(base_lm, max_batch=8, prefill_chunk=16)


def _solo(base_lm, adapters, name, ids, n=TOKENS):
    from runtime.adapters import read_adapter
    from runtime.lm import Sampling

    lm = base_lm.with_adapter(read_adapter(adapters[name], base_lm.session, name)) if name else base_lm
    return lm.generate(ids, Sampling(max_new_tokens=n))


def test_concurrent_requests_share_decode_steps_and_each_gets_its_own_answer(base_lm, adapters, decoder, tokenizer):
    """Six requests of three 'tasks' (two adapters and the base), prompts of different lengths, arriving together
    and decoded in shared steps: each gets exactly the greedy tokens it gets alone."""
    from runtime.adapters import read_adapter
    from runtime.lm import Sampling

    loras = {name: read_adapter(folder, base_lm.session, name) for name, folder in adapters.items()}
    jobs = [(name, tokenizer(p).input_ids) for name in ("a", "b", None) for p in PROMPTS[:2]]
    want = [_solo(base_lm, adapters, name, ids) for name, ids in jobs]
    got = run_together(jobs, lambda job: list(decoder.stream(job[1], Sampling(max_new_tokens=TOKENS),
                                                             loras.get(job[0]))))
    assert got == want
    assert decoder.max_rows_seen >= 3  # they really shared steps
    assert decoder.steps < sum(len(w) for w in want)


def test_a_request_joins_a_running_batch_and_a_long_prompt_is_prefilled_in_chunks(base_lm, adapters, decoder,
                                                                                  tokenizer):
    from runtime.adapters import read_adapter
    from runtime.lm import Sampling

    lora_a = read_adapter(adapters["a"], base_lm.session, "a")
    first_ids = tokenizer(PROMPTS[0]).input_ids
    long_ids = tokenizer(" ".join(PROMPTS) * 6).input_ids  # several 16-token chunks
    assert len(long_ids) > 3 * decoder.prefill_chunk
    first = decoder.stream(first_ids, Sampling(max_new_tokens=40), lora_a)
    head = [next(first) for _ in range(3)]  # the first request is decoding...
    second = list(decoder.stream(long_ids, Sampling(max_new_tokens=TOKENS)))  # ...when the second arrives
    rest = list(first)
    assert head + rest == _solo(base_lm, adapters, "a", first_ids, 40)
    assert second == _solo(base_lm, adapters, None, long_ids)
    assert decoder.max_rows_seen == 2


def test_an_abandoned_stream_leaves_the_batch(base_lm, decoder, tokenizer):
    import time

    from runtime.lm import Sampling

    ids = tokenizer(PROMPTS[1]).input_ids
    stream = decoder.stream(ids, Sampling(max_new_tokens=500, no_repeat_ngram=0))
    next(stream)
    stream.close()  # the browser tab closed
    deadline = time.time() + 10
    while decoder._rows and time.time() < deadline:
        time.sleep(0.01)
    assert not decoder._rows and decoder.steps < 400
    assert list(decoder.stream(ids, Sampling(max_new_tokens=TOKENS))) == base_lm.generate(
        ids, Sampling(max_new_tokens=TOKENS))


def test_a_version_is_stale_on_an_older_graph_format_or_without_its_checks(tiny_lm_dir, adapters, lora_export,
                                                                          tmp_path):
    """prepare rebuilds a version whose LoRA graph is of an older patch format, or that was never checked on
    the graph it is registered with (its inputs or numbers could differ from what the runtime expects)."""
    import shutil

    from export.finetuned import shared_adapter_version
    from export.prepare import _stale

    mv = shared_adapter_version(adapters["a"], "summarize-aaaa", tiny_lm_dir, tmp_path / "models", "")
    assert not _stale(mv)
    checks = next(Path(mv.adapter).glob("checks-*.json"))
    checks.rename(checks.with_name("checks-other.json"))
    assert _stale(mv)
    checks.with_name("checks-other.json").rename(checks)
    old = tmp_path / "older" / lora_export.path.name  # same name: only the format differs
    shutil.copytree(lora_export.path, old, ignore=shutil.ignore_patterns("*.onnx", "*.onnx_data"))
    manifest = json.loads((old / "manifest.json").read_text())
    from dataclasses import replace

    assert not _stale(replace(mv, path=str(old)))
    (old / "manifest.json").write_text(json.dumps({**manifest, "lora_format": manifest["lora_format"] - 1}))
    assert _stale(replace(mv, path=str(old)))


def test_a_failing_step_fails_its_requests_and_the_loop_goes_on(base_lm, decoder, tokenizer, monkeypatch):
    from runtime.lm import Sampling

    ids = tokenizer(PROMPTS[0]).input_ids
    real = decoder.lm.forward
    calls = []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 3:  # a decode step, after the prefill and one step
            raise RuntimeError("onnx exploded")
        return real(*a, **k)

    monkeypatch.setattr(decoder.lm, "forward", flaky)
    with pytest.raises(RuntimeError, match="exploded"):
        list(decoder.stream(ids, Sampling(max_new_tokens=TOKENS)))
    assert not decoder._rows
    assert list(decoder.stream(ids, Sampling(max_new_tokens=TOKENS))) == base_lm.generate(
        ids, Sampling(max_new_tokens=TOKENS))


def test_a_closed_decoder_finishes_its_stream_and_its_thread_ends(base_lm, decoder, tokenizer):
    from runtime.lm import Sampling

    ids = tokenizer(PROMPTS[0]).input_ids
    stream = decoder.stream(ids, Sampling(max_new_tokens=TOKENS))
    first = next(stream)
    decoder.close()  # a newer version replaced this session: in-flight answers still finish
    assert [first, *stream] == base_lm.generate(ids, Sampling(max_new_tokens=TOKENS))
    decoder._thread.join(10)
    assert not decoder._thread.is_alive()
