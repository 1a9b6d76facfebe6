"""The fused-attention base graph (onnxruntime-genai's builder) with LoRA inputs and the in-place slot decoder."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.conftest import PROMPTS, TOKENS, run_together, torch_greedy as _torch_greedy


def _four_bit(nodes) -> set[str]:
    """The projections a graph's nodes run as MatMulNBits (4-bit), by module name."""
    return {n.name.split("/")[-2] for n in nodes if n.op_type == "MatMulNBits"}


@pytest.fixture(scope="session")
def gqa_export(tiny_lm_dir, onnx_root):
    from export.gqa_graph import export_gqa_base

    return export_gqa_base(tiny_lm_dir, onnx_root, ["fp32", "int8"])


@pytest.fixture(scope="session")
def gqa_lm(gqa_export, tokenizer):
    from runtime.gqa import GqaCausalLM

    return GqaCausalLM(gqa_export.onnx("fp32"), tokenizer, "fp32", "cpu", slots=4, max_len=512)


def test_the_fused_graph_is_checked_against_pytorch(gqa_export):
    import onnx

    manifest = json.loads((gqa_export.path / "manifest.json").read_text())
    assert manifest["graph"] == "gqa" and manifest["lora_slots"] == 2 * 5  # q/k/v packed: 5 projections a layer
    assert manifest["checks"]["fp32"]["kv_cache_greedy_equal"] and manifest["checks"]["int8"]["passed"]
    nodes = onnx.load(str(gqa_export.onnx("int8")), load_external_data=False).graph.node
    ops = {n.op_type for n in nodes}
    # fused attention, int8 MatMuls with the 4-bit down_proj and lm_head, no per-step copy or expansion of the cache
    assert {"GroupQueryAttention", "MatMulInteger", "MatMulNBits"} <= ops and not {"Expand", "Concat"} & ops
    assert _four_bit(nodes) == {"down_proj", "lm_head"}
    assert manifest["int8_down_proj"] == "4bit" and manifest["int8_lm_head"] == "4bit"


def test_decode_steps_run_on_the_4bit_companion_and_prompts_on_int8(gqa_export, tokenizer):
    """int8-decode: every projection 4-bit (no dynamic int8 left), checked like int8. With decode_graph
    (NLPAPP_DECODE_GRAPH=1) an int8 model prefills on int8 and runs one-token steps on the companion, over the same
    slot cache; by default every step stays on int8."""
    import onnx

    from runtime.gqa import GqaCausalLM

    manifest = json.loads((gqa_export.path / "manifest.json").read_text())
    assert manifest["precisions"] == ["fp32", "int8", "int8-decode"] and manifest["checks"]["int8-decode"]["passed"]
    assert manifest["decode_graph"]["int8"] == "int8-decode"
    nodes = onnx.load(str(gqa_export.onnx("int8-decode")), load_external_data=False).graph.node
    assert _four_bit(nodes) == {"qkv_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"}
    assert not {"MatMulInteger", "DynamicQuantizeLinear"} & {n.op_type for n in nodes}
    served = GqaCausalLM(gqa_export.onnx("int8"), tokenizer, "int8", "cpu", slots=2, max_len=128, decode_graph=True)
    plain = GqaCausalLM(gqa_export.onnx("int8"), tokenizer, "int8", "cpu", slots=2, max_len=128)  # the default
    companion = GqaCausalLM(gqa_export.onnx("int8-decode"), tokenizer, "int8-decode", "cpu", slots=2, max_len=128)
    assert served.decode_session is not None and plain.decode_session is None and companion.decode_session is None
    ids = tokenizer(PROMPTS[2]).input_ids
    n = len(ids)
    prefill = [m.run_slots(0, np.asarray([ids]), [n]) for m in (served, plain)]
    np.testing.assert_array_equal(prefill[0], prefill[1])  # the prompt: int8 in both
    companion.write_slot(0, served.read_slot(0, n), n)  # the same cache, so the companion's step is comparable
    step = [m.run_slots(0, np.asarray([[ids[-1]]]), [n + 1]) for m in (served, plain, companion)]
    np.testing.assert_allclose(step[0], step[2], atol=1e-5)  # the served step ran on the companion
    assert not np.allclose(step[0], step[1], atol=1e-5)  # which is not int8
    # serving opens it in the background (start time): steps run on int8 until then, and a view made before it
    # opened (the decoder's, with_adapter) sees it once it is open
    late = GqaCausalLM(gqa_export.onnx("int8"), tokenizer, "int8", "cpu", slots=2, max_len=128, decode_graph=True,
                       decode_graph_background=True)
    view = late.with_adapter(late.lora)
    deadline = time.time() + 60
    while view.decode_session is None and time.time() < deadline:
        time.sleep(0.05)
    assert view.decode_session is late.decode_session is not None


def test_a_task_that_opts_out_of_the_decode_graph_decodes_on_int8(gqa_export, tokenizer, monkeypatch):
    """Sampling.decode_graph (from the task's Decoding.decode_graph): a request that opts out runs every step on
    int8 (its tokens are int8's alone); one that does not runs its one-token steps on the companion, while a step
    has at most DECODE_GRAPH_MAX_ROWS rows."""
    from runtime.decoder import decoder_for
    from runtime.gqa import GqaCausalLM
    from runtime.lm import Sampling

    served = GqaCausalLM(gqa_export.onnx("int8"), tokenizer, "int8", "cpu", slots=2, max_len=256, decode_graph=True)
    steps = []
    real = served.decode_session.run_with_iobinding
    served.decode_session.run_with_iobinding = lambda *a, **k: steps.append(1) or real(*a, **k)
    ids = tokenizer(PROMPTS[0]).input_ids
    d = decoder_for(served, 2, 16, prefix_cache_mb=0)
    kept = list(d.stream(ids, Sampling(max_new_tokens=TOKENS, decode_graph=False, no_repeat_ngram=0)))
    assert not steps and kept == _solo(served, None, ids)  # OnnxCausalLM.generate: all on the int8 session
    fast = list(d.stream(ids, Sampling(max_new_tokens=TOKENS)))
    d.close()
    assert len(steps) == len(fast) - 1  # every step after the prefill's token ran on the companion
    served.run_slots(0, np.full((2, 1), ids[-1]), [len(ids) + 1] * 2)  # two rows: still the companion
    assert len(steps) == len(fast)
    monkeypatch.setattr("runtime.gqa.DECODE_GRAPH_MAX_ROWS", 1)  # more rows than that: int8
    served.run_slots(0, np.full((2, 1), ids[-1]), [len(ids) + 1] * 2)
    assert len(steps) == len(fast)


def test_a_prefill_computes_the_last_position_logits_only(gqa_export, gqa_lm, tokenizer):
    """logits_to_keep: 1 gives exactly the last row of the full logits (0), and run_slots asks for it."""
    from export.onnx_export import _ort_full_logits
    from runtime.adapters import no_adapter

    ids = tokenizer(PROMPTS[1]).input_ids
    full = _ort_full_logits(gqa_lm.session, ids, "lm", no_adapter(gqa_lm.session))
    assert full.shape[0] == len(ids)
    n = len(ids)
    last, _ = gqa_lm.forward(np.asarray([ids]), np.ones((1, n), np.int64), gqa_lm.empty_past(1),
                             np.arange(n)[None, :], keep=1)
    assert last.shape == (1, 1, full.shape[-1]) and np.allclose(last[0, 0], full[-1], atol=1e-5)
    slot = gqa_lm.run_slots(3, np.asarray([ids]), [n])
    assert slot.shape == (1, 1, full.shape[-1]) and np.allclose(slot[0, 0], full[-1], atol=1e-5)


def test_adapters_on_the_packed_projection_equal_pytorch_peft(tiny_lm_dir, adapters, gqa_lm, tokenizer):
    """fp32 greedy tokens equal PyTorch + PEFT with each adapter (all projections; q/v only with rsLoRA) and none,
    switched per request on one session: the block-diagonal q/k/v factors are exact."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from runtime.adapters import read_adapter
    from runtime.lm import Sampling

    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval(), adapters["a"],
                                     adapter_name="a")
    peft.load_adapter(adapters["b"], adapter_name="b")
    peft.eval()
    views = {n: gqa_lm.with_adapter(read_adapter(f, gqa_lm.session, n)) for n, f in adapters.items()}
    answers = {}
    for name in ["a", None, "b"]:
        for prompt in PROMPTS:
            ids = tokenizer(prompt).input_ids
            got = (views[name] if name else gqa_lm).generate(ids, Sampling(max_new_tokens=TOKENS))
            if name:
                peft.set_adapter(name)
                want = _torch_greedy(peft, tokenizer, ids, gqa_lm.stop_ids)
            else:
                with peft.disable_adapter():
                    want = _torch_greedy(peft, tokenizer, ids, gqa_lm.stop_ids)
            assert got == want, (name, prompt)
            answers.setdefault(name, []).append(got)
    assert answers["a"] != answers[None] and answers["b"] != answers[None] and answers["a"] != answers["b"]


def test_a_kept_binding_follows_the_adapter_the_slots_and_the_steps(gqa_lm, adapters, tokenizer):
    """run_slots keeps its IO binding while the slots and the adapter factors stay the same: every step then gives
    what a fresh binding gives, and a new adapter or other slots are bound anew, not served stale."""
    from runtime.adapters import read_adapter

    loras = [read_adapter(adapters[n], gqa_lm.session, n) for n in ("a", "b")]
    kept, fresh = gqa_lm.with_adapter(loras[0]), gqa_lm.with_adapter(loras[0])
    ids = tokenizer(PROMPTS[0]).input_ids
    n = len(ids)

    def both(slot, tokens, length):  # the kept view on `slot`, the fresh one (binding dropped) on slot + 1
        fresh._bound = None
        got = [m.run_slots(s, np.asarray([tokens]), [length]) for m, s in ((kept, slot), (fresh, slot + 1))]
        np.testing.assert_allclose(got[0], got[1], atol=1e-5, err_msg=f"slot {slot}, length {length}")
        return got[0]

    both(0, ids, n)
    first = both(0, [ids[-1]], n + 1)
    bound = kept._bound
    second = both(0, [ids[-1]], n + 2)
    assert kept._bound is bound and not np.allclose(first, second)  # reused, and the step moved on
    kept.lora = fresh.lora = loras[1]
    switched = both(0, [ids[-1]], n + 3)
    assert kept._bound is not bound
    fresh.lora = loras[0]
    fresh._bound = None
    stale = fresh.run_slots(1, np.asarray([[ids[-1]]]), [n + 3])  # the same step with the old adapter
    assert not np.allclose(switched, stale, atol=1e-4)
    fresh.lora = loras[1]
    both(2, ids, n)  # other slots: bound anew, the same as fresh
    assert kept._bound[1] == (2, 1)


@pytest.fixture
def slot_decoder(gqa_lm):
    from runtime.decoder import SlotDecoder, decoder_for

    d = decoder_for(gqa_lm, max_batch=8, prefill_chunk=16)
    assert isinstance(d, SlotDecoder) and d.max_batch == gqa_lm.slots
    yield d
    d.close()


def _solo(lm, lora, ids, n=TOKENS):
    from runtime.lm import Sampling

    return (lm.with_adapter(lora) if lora else lm).generate(ids, Sampling(max_new_tokens=n))


def test_slot_decoding_gives_each_request_its_own_answer(gqa_lm, adapters, slot_decoder, tokenizer):
    """Six requests of three 'tasks', different prompt lengths and answer lengths, more than the slots at once:
    rows join, finish at different steps, and the caches behind them move down; each gets its solo tokens."""
    from runtime.adapters import read_adapter
    from runtime.lm import Sampling

    loras = {n: read_adapter(f, gqa_lm.session, n) for n, f in adapters.items()}
    jobs = [(name, tokenizer(p).input_ids, n) for name, n in (("a", 6), ("b", 12), (None, 9))
            for p in PROMPTS[:2]]
    want = [_solo(gqa_lm, loras.get(name), ids, n) for name, ids, n in jobs]
    got = run_together(jobs, lambda job: list(slot_decoder.stream(job[1], Sampling(max_new_tokens=job[2]),
                                                                   loras.get(job[0]))))
    assert got == want
    assert slot_decoder.max_rows_seen == gqa_lm.slots  # the slots filled up, and later requests took freed ones


def test_a_long_prompt_is_prefilled_in_chunks_into_the_next_slot(gqa_lm, adapters, slot_decoder, tokenizer):
    from runtime.adapters import read_adapter
    from runtime.lm import Sampling

    lora_a = read_adapter(adapters["a"], gqa_lm.session, "a")
    first_ids, long_ids = tokenizer(PROMPTS[0]).input_ids, tokenizer(" ".join(PROMPTS) * 6).input_ids
    assert len(long_ids) > 3 * slot_decoder.prefill_chunk
    first = slot_decoder.stream(first_ids, Sampling(max_new_tokens=40), lora_a)
    head = [next(first) for _ in range(3)]
    second = list(slot_decoder.stream(long_ids, Sampling(max_new_tokens=TOKENS)))
    assert head + list(first) == _solo(gqa_lm, lora_a, first_ids, 40)
    assert second == _solo(gqa_lm, None, long_ids)


def test_prompt_lookup_drafts_change_no_answer(gqa_lm, adapters, tokenizer):
    """Greedy answers with draft tokens checked a pass at a time are the one-token-a-step answers: with the
    prompt-lookup drafts, with drafts that are the answer itself (taken: fewer steps), and with wrong ones (none
    taken); adapters per request, a repetition penalty and an n-gram ban applied in order over taken tokens."""
    from runtime.adapters import read_adapter
    from runtime.decoder import decoder_for
    from runtime.lm import Sampling

    loras = {n: read_adapter(f, gqa_lm.session, n) for n, f in adapters.items()}
    echo = tokenizer(" ".join(PROMPTS) + " " + " ".join(PROMPTS)).input_ids  # repeats: lookups find drafts
    samplings = [Sampling(max_new_tokens=14), Sampling(max_new_tokens=10, repetition_penalty=1.3, no_repeat_ngram=3)]
    jobs = [(name, ids, s) for name in ("a", None) for ids in (tokenizer(PROMPTS[1]).input_ids, echo)
            for s in samplings]
    want = [(gqa_lm.with_adapter(loras[name]) if name else gqa_lm).generate(ids, s) for name, ids, s in jobs]
    answers = {(tuple(ids), s.max_new_tokens): w for (_, ids, s), w in zip(jobs, want)}

    def oracle(r):  # the answer's own next tokens
        return answers[tuple(r.prompt), r.sampling.max_new_tokens][len(r.generated):][:4]

    steps = {}
    for lookahead, draft in ((0, None), (4, None), (4, oracle), (4, lambda r: [7, 7, 7])):
        d = decoder_for(gqa_lm, 4, 16, lookahead=lookahead)
        if draft is not None:
            d._draft = draft
        got = [list(d.stream(ids, s, loras.get(name))) for name, ids, s in jobs]  # one at a time: steps compare
        d.close()
        assert got == want
        steps[lookahead, draft] = d.steps
        if draft is not None:
            assert d.drafted > 0 and (d.accepted > 0) == (draft is oracle)
    assert steps[4, oracle] < steps[0, None] / 2
    # the cache a drafted answer leaves behind is its prompt and answer prefilled anew (taken drafts in place)
    d = decoder_for(gqa_lm, 4, 16, prefix_cache_mb=0, lookahead=4)
    d._draft = oracle
    answer = list(d.stream(echo, samplings[0]))
    d.close()
    assert d.accepted > 0 and answer == want[jobs.index((None, echo, samplings[0]))]
    n = len(echo) + len(answer) - 1  # the last token is sent, never fed
    gqa_lm.run_slots(3, np.asarray([echo + answer[:-1]]), [n])
    left, fresh = gqa_lm.read_slot(0, n), gqa_lm.read_slot(3, n)
    assert all(np.allclose(left[k], fresh[k], atol=1e-4) for k in left)
    together = decoder_for(gqa_lm, 4, 16, lookahead=4)  # and batched with others, rows joining and leaving
    assert run_together(jobs, lambda job: list(together.stream(job[1], job[2], loras.get(job[0])))) == want
    together.close()


def test_prompt_lookup_finds_what_followed_the_answers_last_tokens(gqa_lm):
    from runtime.decoder import SlotDecoder, _Request
    from runtime.lm import Sampling

    d = SlotDecoder(gqa_lm, 4, 16, prefix_cache_mb=0, lookahead=3)
    r = _Request([5, 1, 2, 3, 4, 9, 1, 2, 8, 6], Sampling(max_new_tokens=20), None)
    r.generated = [1, 2]
    assert d._draft(r) == [8, 6]  # the latest occurrence with tokens after it
    r.generated = [0, 1, 2, 3]
    assert d._draft(r) == [4, 9, 1]  # three tokens matched first, up to `lookahead` taken
    r.generated = [4, 7]
    assert d._draft(r) == []
    r.generated, r.draft_wait = [1, 2], 2  # its last draft was refused: two steps without one
    assert [d._draft(r) for _ in range(3)] == [[], [], [8, 6]]
    r.sampling = Sampling(max_new_tokens=20, temperature=0.7)
    r.generated = [1, 2]
    assert d._draft(r) == []  # sampled answers draw their own tokens


def test_an_abandoned_stream_frees_its_slot(gqa_lm, slot_decoder, tokenizer):
    import time

    from runtime.lm import Sampling

    ids = tokenizer(PROMPTS[1]).input_ids
    stream = slot_decoder.stream(ids, Sampling(max_new_tokens=400, no_repeat_ngram=0))
    next(stream)
    stream.close()
    deadline = time.time() + 10
    while slot_decoder._rows and time.time() < deadline:
        time.sleep(0.01)
    assert not slot_decoder._rows
    assert list(slot_decoder.stream(ids, Sampling(max_new_tokens=TOKENS))) == _solo(gqa_lm, None, ids)


def test_a_sequence_longer_than_the_cache_fails_alone(gqa_lm, tokenizer):
    from runtime.decoder import decoder_for
    from runtime.lm import Sampling

    d = decoder_for(gqa_lm, 4, 16)
    ids = tokenizer(PROMPTS[0]).input_ids
    with pytest.raises(ValueError, match="exceed the cache"):
        list(d.stream(ids * 200, Sampling(max_new_tokens=4)))
    assert list(d.stream(ids, Sampling(max_new_tokens=TOKENS))) == _solo(gqa_lm, None, ids)
    d.close()


def test_an_answer_that_fills_its_cache_ends_there_and_the_others_go_on(gqa_lm, slot_decoder, tokenizer):
    from runtime.lm import Sampling

    short = tokenizer(PROMPTS[0]).input_ids
    long = (tokenizer(" ".join(PROMPTS)).input_ids * 40)[:gqa_lm.max_len - 5]
    first = slot_decoder.stream(short, Sampling(max_new_tokens=TOKENS))
    head = next(first)
    filled = list(slot_decoder.stream(long, Sampling(max_new_tokens=40)))
    # 5 answer tokens fit in the cache after the prompt, and a 6th is picked from the last step's logits
    want = _solo(gqa_lm, None, long, 40)  # a plain stream has no slot limit
    assert len(want) > 6 and filled == want[:6]
    assert [head, *first] == _solo(gqa_lm, None, short)


def test_a_prompt_that_starts_like_an_earlier_one_prefills_only_the_rest(gqa_lm, adapters, tokenizer):
    """A tab's prompts share their beginning (the system prompt): the second prompt takes those positions' cache
    from the first and gets the tokens it gets alone; another adapter's prompt with the same beginning does not
    (its keys and values differ), nor does anything once the cache is off."""
    from runtime.adapters import read_adapter
    from runtime.decoder import decoder_for
    from runtime.lm import Sampling

    loras = {n: read_adapter(f, gqa_lm.session, n) for n, f in adapters.items()}
    system = tokenizer(" ".join(PROMPTS) * 2, add_special_tokens=False).input_ids
    asks = [system + tokenizer(q, add_special_tokens=False).input_ids
            for q in ("Where is my order?", "Can I return a used tent?", "Where is my order?")]
    d = decoder_for(gqa_lm, 4, 16)
    got = [list(d.stream(ids, Sampling(max_new_tokens=TOKENS), loras["a"])) for ids in asks[:2]]
    assert got == [_solo(gqa_lm, loras["a"], ids) for ids in asks[:2]]
    assert (d.prefixes.hits, d.prefixes.tokens_reused) == (1, len(system))
    assert [e.tokens for e in d.prefixes.entries] == [system]  # cut to the shared beginning
    other = list(d.stream(asks[2], Sampling(max_new_tokens=TOKENS), loras["b"]))
    assert other == _solo(gqa_lm, loras["b"], asks[2]) and d.prefixes.hits == 1  # adapter b: nothing reused
    again = list(d.stream(asks[2], Sampling(max_new_tokens=TOKENS), loras["b"]))  # a repeat: all but its last
    assert again == other and d.prefixes.tokens_reused == len(system) + len(asks[2]) - 1
    d.close()
    off = decoder_for(gqa_lm, 4, 16, prefix_cache_mb=0)
    assert off.prefixes is None and list(off.stream(asks[1], Sampling(max_new_tokens=TOKENS), loras["a"])) == got[1]
    off.close()


def test_concurrent_prompts_with_a_shared_beginning_each_get_their_own_answer(gqa_lm, adapters, tokenizer):
    """Reused beginnings while other rows decode and leave (slots move, a prompt is half prefilled)."""
    from runtime.adapters import read_adapter
    from runtime.decoder import decoder_for
    from runtime.lm import Sampling

    loras = {n: read_adapter(f, gqa_lm.session, n) for n, f in adapters.items()}
    system = tokenizer(" ".join(PROMPTS) * 3, add_special_tokens=False).input_ids
    jobs = [(name, system + tokenizer(f"question {i} " * (i + 1), add_special_tokens=False).input_ids, 4 + 3 * i)
            for i, name in enumerate(["a", "a", None, "a", "b", None, "a"])]
    d = decoder_for(gqa_lm, 4, 16)
    got = run_together(jobs, lambda job: list(d.stream(job[1], Sampling(max_new_tokens=job[2]), loras.get(job[0]))))
    assert got == [_solo(gqa_lm, loras.get(name), ids, n) for name, ids, n in jobs]
    assert d.prefixes.hits >= 1
    d.close()


def test_the_prefix_cache_keeps_to_its_budget_and_drops_the_least_recently_used():
    from runtime.decoder import PrefixCache

    def kv(n):
        return {"past.0.key": np.zeros((2, n, 8), np.float32)}  # 64 bytes a position

    cache = PrefixCache(budget_bytes=64 * 100, min_tokens=4)
    lora = object()
    cache.add(lora, list(range(60)), kv(60))
    cache.add(lora, list(range(100, 130)), kv(30))
    assert cache.lookup(lora, list(range(10)) + [7, 7]) == (cache.entries[-1], 10)  # cut to 10 positions
    cache.add(lora, list(range(200, 270)), kv(70))  # 10 + 30 + 70 > 100 positions: the oldest use goes
    assert [e.tokens[0] for e in cache.entries] == [0, 200]
    assert cache.lookup(object(), list(range(20))) == (None, 0)  # another adapter
    assert cache.lookup(lora, [0, 1, 2, 9]) == (None, 0)  # under min_tokens
    cache.add(lora, list(range(500)), kv(500))  # bigger than the whole budget: not kept
    assert len(cache.entries) == 2


def test_int8_stays_close_to_fp32(gqa_export, tokenizer):
    from export.onnx_export import _ort_full_logits
    from runtime.adapters import no_adapter
    from runtime.providers import open_session

    ids = tokenizer(PROMPTS[1]).input_ids
    fp32, _ = open_session(gqa_export.onnx("fp32"), "fp32", "cpu")
    int8, _ = open_session(gqa_export.onnx("int8"), "int8", "cpu")
    a, b = (_ort_full_logits(s, ids, "lm", no_adapter(s)) for s in (fp32, int8))
    cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.mean() > 0.9 and not np.allclose(a, b)  # quantized for real, and still the same model


def test_int8_with_a_refused_4bit_down_proj_is_rebuilt_with_it_in_fp32(tiny_lm_dir, tmp_path, monkeypatch):
    """A base whose 4-bit down_proj fails the int8 check (SmolLM2-135M does) gets int8 with down_proj in fp32,
    checked again, and the manifest says which one it serves."""
    import onnx
    from onnx import numpy_helper

    import export.gqa_graph as gqa

    real = gqa.quantize_mixed

    def broken_down_proj(model, nbits=gqa.NBITS, symmetric=True):  # 4-bit weights made useless: int8's check refuses
        model = real(model, nbits, symmetric)
        for init in model.graph.initializer:
            if "down_proj" in init.name and init.data_type == onnx.TensorProto.UINT8:
                init.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(init), 0x0F), init.name))
        return model

    monkeypatch.setattr(gqa, "quantize_mixed", broken_down_proj)
    result = gqa.export_gqa_base(tiny_lm_dir, tmp_path, ["fp32", "int8"])
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["int8_down_proj"] == "fp32" and manifest["int8_lm_head"] == "int8"
    assert manifest["checks"]["int8"]["passed"]
    # the decode companion (more 4-bit still) is not served either
    assert "int8-decode" not in manifest["precisions"] and manifest["decode_graph"] is None
    assert not (result.path / "int8-decode").exists()
    ops = {n.op_type for n in onnx.load(str(result.onnx("int8")), load_external_data=False).graph.node}
    assert "MatMulInteger" in ops and "MatMulNBits" not in ops


def test_the_lora_cost_bench_compares_with_the_same_base_without_lora_nodes(gqa_export, gqa_lm, tokenizer, tmp_path):
    """bench.lora_cost times the graph against a copy without its LoRA nodes: that copy must be the base itself
    (the same logits as rank-0 factors), with no LoRA input left."""
    from bench.lora_cost import strip_lora, time_steps
    from runtime.gqa import GqaCausalLM

    src = gqa_export.onnx("fp32").parent
    assert strip_lora(src, tmp_path / "bare") == 3 * 10  # two layers, five slots, three nodes a slot
    bare = GqaCausalLM(tmp_path / "bare" / "model.onnx", tokenizer, "fp32", "cpu", slots=4, max_len=512)
    assert bare.lora is None and gqa_lm.lora is not None
    ids = np.asarray([tokenizer(PROMPTS[0]).input_ids], np.int64)
    np.testing.assert_allclose(bare.run_slots(0, ids, [ids.shape[1]]), gqa_lm.run_slots(1, ids, [ids.shape[1]]),
                               atol=1e-5)
    assert time_steps(bare, first_len=ids.shape[1] + 1, steps=2) > 0


def test_an_adapter_merged_into_a_decode_graph_answers_as_the_run_time_adapter(gqa_export, gqa_lm, adapters,
                                                                               tokenizer, tmp_path):
    """W + A B in fp32 is exactly the run-time adapter; the merged decode graph (quantized as the export's decode
    graph) passes its check, takes no factors, and serves the steps whose rows all apply that adapter only."""
    import onnx

    from export.lora_graph import merge_lora
    from export.merged_decode import _GraphInputs, build_merged_decode
    from runtime.adapters import LoraFeeds, read_adapter, stack
    from runtime.gqa import GqaCausalLM, merged_decode_graph

    model = onnx.load(str(gqa_export.onnx("fp32")))
    lora = read_adapter(adapters["a"], _GraphInputs(model.graph), "a")
    assert merge_lora(model, lora.feeds) == 2 * 5  # every slot of both layers: adapter a targets all seven
    assert not [i for i in model.graph.input if i.name.startswith("lora_")]
    (tmp_path / "fp32").mkdir()
    onnx.save(model, str(tmp_path / "fp32" / "model.onnx"))
    config = gqa_export.onnx("fp32").parent / "genai_config.json"
    (tmp_path / "fp32" / "genai_config.json").write_text(config.read_text())
    merged = GqaCausalLM(tmp_path / "fp32" / "model.onnx", tokenizer, "fp32", "cpu", slots=1, max_len=512)
    ids = np.asarray([tokenizer(PROMPTS[1]).input_ids], np.int64)
    np.testing.assert_allclose(merged.run_slots(0, ids, [ids.shape[1]]),
                               gqa_lm.with_adapter(read_adapter(adapters["a"], gqa_lm.session, "a"))
                               .run_slots(2, ids, [ids.shape[1]]), atol=1e-4)

    models = tmp_path / "models"
    # The tiny model's random adapter moves its weights far more than a trained one does, so W + A B in 4 bits
    # loses more here than the run-time path (float A B): the stated rule refuses it, and the refusal is recorded
    # (a start does not retry it) and never served.
    with pytest.raises(ValueError, match="differs from its run-time adapter"):
        build_merged_decode(gqa_export.path, adapters["a"], "a-1", models)
    assert merged_decode_graph(models, "a-1", gqa_export.path) is None
    refused = json.loads((models / "onnx" / "merged-decode" / "a-1" / "manifest.json").read_text())["check"]
    assert not refused["passed"] and refused["merged"]["mean_logit_cosine"] < 0.95
    assert refused["run-time adapter"]["mean_logit_cosine"] >= 0.95
    path = build_merged_decode(gqa_export.path, adapters["a"], "a-1", models, force=True, min_cosine=0.85)
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["check"]["passed"] and manifest["projections_merged"] == 10, manifest["check"]
    assert manifest["recipe"]["symmetric"] is False  # 4-bit blocks with zero points (export/merged_decode.py)
    assert merged_decode_graph(models, "a-1", gqa_export.path) == path
    assert merged_decode_graph(models, "a-1", tmp_path / "another-export") is None
    graph = onnx.load(str(path), load_external_data=False).graph
    assert not [i for i in graph.input if i.name.startswith("lora_")]
    decode = onnx.load(str(gqa_export.onnx("int8-decode")), load_external_data=False).graph
    assert _four_bit(graph.node) == _four_bit(decode.node) == {  # the export's decode recipe
        "qkv_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"}

    served = GqaCausalLM(gqa_export.onnx("int8"), tokenizer, "int8", "cpu", slots=4, max_len=512, decode_graph=True)
    loras = {n: read_adapter(adapters[n], served.session, n) for n in ("a", "b")}
    view = served.with_adapter(loras["a"])
    view.add_merged_decode(loras["a"], path)
    merged_session = served._companion["merged"]["a"][1]
    n = ids.shape[1]
    view.run_slots(0, ids, [n])
    assert view._bound[0] is served.session  # prompts: the shared int8 graph with the adapter's factors
    view.run_slots(0, ids[:, -1:], [n + 1])
    assert view._bound[0] is merged_session
    view.run_slots(0, ids[:, -1:], [n + 2], decode_graph=False)  # a task that keeps its steps on int8
    assert view._bound[0] is served.session
    other = served.with_adapter(loras["b"])
    other.run_slots(1, ids[:, -1:], [n + 1])
    assert other._bound[0] is served.decode_session  # another adapter: the shared decode graph
    mixed = served.with_adapter(LoraFeeds("rows", stack([loras["a"], loras["b"]])))
    mixed.run_slots(0, np.repeat(ids[:, -1:], 2, 0), [n + 1] * 2)
    assert mixed._bound[0] is served.decode_session

    # served: a task named in NLPAPP_MERGED_DECODE gets its graph (opened in the background), the others do not
    from runtime import registry
    from runtime.models import ModelSet

    mv = registry.ModelVersion("a-1", "lm", str(gqa_export.path), tuned=True, base_model="tiny",
                               adapter=str(adapters["a"]))
    registry.register(models, "generate", mv)
    registry.register(models, "summarize", mv)
    backend = ModelSet(models, "cpu", "int8", merged_decode=("generate",)).load("generate")
    for _ in range(300):
        if backend.model._companion.get("merged"):
            break
        time.sleep(0.1)
    assert [f is backend.model.lora.feeds for f, _ in backend.model._companion["merged"].values()] == [True]
    other = ModelSet(models, "cpu", "int8", merged_decode=("generate",)).load("summarize")
    assert not other.model._companion.get("merged")
