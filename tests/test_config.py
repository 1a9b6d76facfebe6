"""Settings from the environment: defaults, and the words that turn a default off."""
from config import Settings


def test_merged_decode_graphs_default_to_qa_summarize_generate_and_none_turns_them_off(monkeypatch):
    monkeypatch.delenv("NLPAPP_MERGED_DECODE", raising=False)
    # the three that did not lose on validation (BENCHMARKS.md); translation keeps its steps on int8
    assert Settings().merged_decode == ("qa", "summarize", "generate")
    for off in ("none", "0", "off", " None "):
        monkeypatch.setenv("NLPAPP_MERGED_DECODE", off)
        assert Settings().merged_decode == ()
    monkeypatch.setenv("NLPAPP_MERGED_DECODE", " generate , qa,")
    assert Settings().merged_decode == ("generate", "qa")
