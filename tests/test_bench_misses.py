"""bench.misses: a classifier's wrong rows, with what it predicted, most confident first."""
import numpy as np


def test_only_wrong_rows_are_listed_most_confident_first():
    from bench.misses import misses

    rows = [{"text": "a", "label": "positive"}, {"text": "b", "label": "negative"},
            {"text": "c", "label": "positive"}, {"text": "d", "label": "negative"}]
    probs = np.array([[0.2, 0.8],    # right
                      [0.4, 0.6],    # wrong, hesitant
                      [0.95, 0.05],  # wrong, confident
                      [0.7, 0.3]])   # right
    found = misses(rows, probs, ["negative", "positive"])

    assert [m["text"] for m in found] == ["c", "b"]
    assert found[0] == {"text": "c", "label": "positive", "predicted": "negative", "p": 0.95}
    assert found[1]["predicted"] == "positive" and found[1]["p"] == 0.6
