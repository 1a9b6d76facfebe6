"""Customer-service QA: knowledge-base CSV parsing (hostile files too), retrieval, prompt with context."""
import numpy as np
import pytest

from tasks import TaskInputError
from tasks import qa


def test_parse_kb_csv_accepts_bom_extra_columns_and_case():
    data = "\ufeffID,Question,Answer,Extra\nk1,How do I pay?,By card.,x\nk2,  ,empty question,\n".encode()
    entries = qa.parse_kb_csv(data)
    assert [(e.id, e.question, e.answer) for e in entries] == [("k1", "How do I pay?", "By card.")]


@pytest.mark.parametrize("data, msg", [
    (b"", "header"),
    (b"q,a\nx,y\n", "header"),
    ("question,answer\n".encode(), "no rows"),
    ("question,answer\nhi,there\n".encode("utf-16"), "NUL|UTF-8"),
    (b"question,answer\n\xff\xfe\xfa,x\n", "UTF-8"),
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "NUL"),
    (b"question,answer\n" + b"a,b\n" * 600_000, "too large"),
    ('question,answer\n"unclosed,quote\n'.encode(), "no rows|malformed"),
])
def test_parse_kb_csv_refuses_bad_files_clearly(data, msg):
    with pytest.raises(TaskInputError, match=msg):
        qa.parse_kb_csv(data)


def test_formula_cells_are_kept_as_text():
    e = qa.parse_kb_csv(b'question,answer\n=1+1,"=HYPERLINK(""x"")"\n')[0]
    assert e.question == "=1+1" and e.answer.startswith("=HYPERLINK")


def test_retrieval_finds_the_right_entry_and_context_has_it():
    kb = qa.KnowledgeBase([qa.Entry("k1", "How long does shipping to Germany take?", "2-4 working days."),
                           qa.Entry("k2", "Can I pay with PayPal?", "Yes, PayPal is accepted."),
                           qa.Entry("k3", "How do I reset my password?", "Use the reset link.")])
    hits = kb.search("paypal payment possible?")
    assert hits[0][0].id == "k2" and hits[0][1] > hits[1][1]
    block = qa.context_block(hits)
    assert "[k2]" in block
    assert qa.context_block([(kb.entries[0], 0.1)]) == "(no relevant entries)"


def test_the_model_is_shown_only_the_top_entries():
    kb = qa.KnowledgeBase([qa.Entry("std", "How long does standard delivery take?", "3-5 working days."),
                           qa.Entry("exp", "How long does express delivery take?", "1-2 working days."),
                           qa.Entry("int", "How long does delivery abroad take?", "5-10 working days.")])
    hits, shown = kb.retrieve_many(["how long does delivery take"])
    assert len(hits[0]) == 3 and sum(s >= qa.MIN_SCORE for _, s in hits[0]) > qa.SHOWN_K  # more than one qualifies
    assert shown[0] == hits[0][: qa.SHOWN_K]


def test_prepare_and_prompt_use_the_served_kb(monkeypatch):
    kb = qa.KnowledgeBase([qa.Entry("k9", "Do you sell gift cards?", "Yes, from 10 to 500 EUR.")])
    monkeypatch.setattr(qa, "_kb", kb)
    opts = qa.lookup("do you have gift cards", {})
    assert opts["sources"] == ["k9"]
    msgs = qa.build_messages("do you have gift cards", opts)
    assert "10 to 500 EUR" in msgs[-1]["content"] and qa.HANDOVER in msgs[0]["content"]
    assert qa.handed_over(qa.HANDOVER)


def test_number_grounding_flags_a_figure_the_entry_does_not_have():
    kb = qa.KnowledgeBase([qa.Entry("exp", "How fast is Express?", "Express delivery takes 1-2 working days."),
                           qa.Entry("ret", "Can I return things?", "You can return items within 30 days.")],
                          embedder=object())
    right = qa.number_grounding(kb, ["Express delivery takes 1-2 working days.", "Returns within 30 days."])
    assert right["numbers_grounded"] == 1.0 and right["numbers_in_answers"] == 3
    wrong = qa.number_grounding(kb, ["Express delivery takes 2-3 working days.", "No figures here."])
    assert wrong["numbers_grounded"] == 0.5 and wrong["answers_with_numbers_all_grounded"] == 0.0
    assert qa.numbers_in("within two weeks, 4.95 EUR") == ["4.95", "two"]


def test_qa_verdict_names_each_target():
    tuned = {"rougeL": 0.7, "handover_rate_out_of_scope": 0.9, "false_handover_rate_in_scope": 0.05,
             "numbers_grounded": 0.97, "numbers_in_answers": 100}
    v = qa.qa_verdict(tuned, {"rougeL": 0.6})
    assert v.startswith("MISSED") and "97.0%" in v
    assert qa.qa_verdict({**tuned, "numbers_grounded": 1.0}, {"rougeL": 0.6}).startswith("met")
    assert qa.qa_verdict({**tuned, "numbers_grounded": 1.0}, {"rougeL": 0.75}).startswith("MISSED")


def _gate(bias: float) -> qa.HandoverGate:
    """A gate that says the same for every question: P(in scope) = sigmoid(bias)."""
    return qa.HandoverGate(np.zeros(384), bias, threshold=0.5)


def test_the_gate_hides_every_entry_from_a_question_it_judges_off_topic(monkeypatch):
    entries = [qa.Entry("k9", "Do you sell gift cards?", "Yes, from 10 to 500 EUR.")]
    monkeypatch.setattr(qa, "_kb", qa.KnowledgeBase(entries, gate=_gate(+5.0)))
    assert qa.lookup("do you have gift cards", {})["sources"] == ["k9"]
    monkeypatch.setattr(qa, "_kb", qa.KnowledgeBase(entries, embedder=qa.knowledge_base().embedder, gate=_gate(-5.0)))
    opts = qa.lookup("do you have gift cards", {})
    assert opts["sources"] == [] and opts["context"] == "(no relevant entries)"
    # the similarity threshold still applies with a gate that lets everything through
    monkeypatch.setattr(qa, "_kb", qa.KnowledgeBase(entries, embedder=qa.knowledge_base().embedder, gate=_gate(+5.0)))
    assert qa.lookup("who won the 1998 world cup", {})["sources"] == []


def test_an_operators_knowledge_base_gets_no_gate(monkeypatch):
    monkeypatch.setattr(qa, "_kb", qa.KnowledgeBase([qa.Entry("a", "q?", "a.")], gate=_gate(-5.0)))
    kb = qa.set_knowledge_base([qa.Entry("k1", "Do you sell gift cards?", "Yes.")])
    assert kb.gate is None and qa.lookup("do you sell gift cards", {})["sources"] == ["k1"]


def test_a_gate_is_saved_and_used_only_for_the_kb_it_was_trained_for(tmp_path):
    gate = qa.HandoverGate(np.linspace(-1, 1, 384), 0.25, 0.125, kb_sha256=qa.demo_kb_sha256())
    gate.save(tmp_path / "gate.safetensors")
    again = qa.demo_gate(tmp_path / "gate.safetensors")
    assert again is not None and again.threshold == 0.125 and again.bias == 0.25
    np.testing.assert_allclose(again.weights, gate.weights, atol=1e-6)
    qa.HandoverGate(gate.weights, 0.25, 0.125, kb_sha256="0" * 64).save(tmp_path / "other.safetensors")
    assert qa.demo_gate(tmp_path / "other.safetensors") is None
    assert qa.demo_gate(tmp_path / "missing.safetensors") is None


def test_the_committed_gate_was_trained_for_the_demo_kb_as_it_is():
    """Editing kb.csv without retraining the gate (python -m export.handover_gate) turns it off: this says so."""
    assert qa.demo_gate() is not None


def test_fit_gate_keeps_the_in_scope_share_it_was_asked_to_and_turns_away_the_rest():
    from export.handover_gate import fit_gate

    rng = np.random.default_rng(0)
    x_in = rng.normal(size=(300, 16)) + 1.5 * np.eye(16)[0]
    x_out = rng.normal(size=(150, 16)) - 1.5 * np.eye(16)[0]
    gate, table = fit_gate(x_in, x_out, np.zeros(150, bool), keep=0.98, cs=(0.1, 1.0))
    assert {r["C"] for r in table} == {0.1, 1.0} and all(0.97 <= r["in_scope_kept"] <= 0.99 for r in table)
    chosen = [r for r in table if r["chosen"]]  # the row the gate was fitted with, marked (not found by its float)
    assert len(chosen) == 1 and chosen[0]["threshold"] == gate.threshold
    assert chosen[0]["off_topic_turned_away"] == max(r["off_topic_turned_away"] for r in table)
    assert np.mean(gate.in_scope(x_in) >= gate.threshold) >= 0.97
    assert np.mean(gate.in_scope(x_out) < gate.threshold) >= 0.8
    # off-topic questions the similarity threshold already turns away count as turned away
    _, all_below = fit_gate(x_in, x_out, np.ones(150, bool), keep=0.98, cs=(1.0,))
    assert all_below[0]["off_topic_turned_away"] == 1.0


def test_the_committed_gate_shows_entries_for_the_tabs_own_examples():
    """The Customer service tab's examples and sample inputs are shop questions: the served gate must let them
    through; one order's status ("... NW-123456") is a human's job, "Where is my order?" an article's."""
    kb = qa.KnowledgeBase(qa.knowledge_base().entries, embedder=qa.knowledge_base().embedder,
                          phrasings=qa.knowledge_base().phrasings, gate=qa.demo_gate())
    task = qa.TASK
    shop = [e[0] for e in task.examples if "weather" not in e[0]] + list(task.sample_inputs) + [task.placeholder]
    assert all(kb.shown_many(shop)), [q for q, s in zip(shop, kb.shown_many(shop)) if not s]
    assert kb.shown_many(["Where is my order NW-123456?", "What's the weather like in Paris?"]) == [[], []]


def test_rerank_shows_the_candidate_the_scorer_prefers_when_the_top_two_are_close(close_kb):
    text = "can I change the delivery address of my order"
    opts = qa.lookup(text, {})
    (first, s1), (second, s2), _ = opts["candidates"]
    assert s1 - s2 < qa.RERANK_MARGIN and opts["sources"] == [first]
    asked = []

    def score(prompts, continuation):  # the article of `second` explains the question best, by far
        asked.append((prompts, continuation))
        return [0.0 if close_kb.by_id[second].question in p[0]["content"] else -100.0 for p in prompts]

    out = qa.rerank(text, opts, score)
    assert out["sources"] == [second] and f"[{second}]" in out["context"] and f"[{first}]" not in out["context"]
    assert out["reranked"][0][0] == second and len(out["reranked"]) == 3
    prompts, continuation = asked[0]
    assert continuation == text and len(prompts) == 3
    # the similarity is a prior: a small preference of the scorer does not overturn a clear retrieval order
    tiny = qa.rerank(text, opts, lambda prompts, c: [
        0.0 if close_kb.by_id[second].question in p[0]["content"] else -0.01 for p in prompts])
    assert tiny["sources"] == [first]


def test_rerank_leaves_clear_long_and_stale_lookups_alone(close_kb):

    def never(prompts, continuation):
        raise AssertionError("not asked")

    clear = {"context": "x", "sources": ["pay"], "candidates": [["pay", 0.9], ["before", 0.5], ["after", 0.4]]}
    assert qa.rerank("paypal?", clear, never) is clear
    close = {"context": "x", "sources": ["before"], "candidates": [["before", 0.7], ["after", 0.69], ["pay", 0.3]]}
    assert qa.rerank("x" * (qa.RERANK_MAX_CHARS + 1), close, never) is close
    stale = {**close, "candidates": [["gone", 0.7], ["after", 0.69]]}  # the KB was replaced since the lookup
    assert qa.rerank("change address", stale, never) is stale
    nothing = {"context": "(no relevant entries)", "sources": [], "candidates": []}  # handed over: no rerank
    assert qa.rerank("weather?", nothing, never) is nothing
    assert qa.lookup("who won the 1998 world cup", {})["candidates"] == []


def test_an_answer_says_which_help_article_it_was_given(close_kb):
    opts = qa.lookup("can I pay with paypal", {})
    assert qa.answer_source(opts) == "Help article given to the assistant: “Can I pay with PayPal?” [pay]"
    assert qa.answer_source({"sources": []}).startswith("No help article matched")
    assert qa.answer_source({"sources": ["gone"]}).endswith("[gone]")  # the KB was replaced since
