"""Server-side micro-batching: concurrent requests share one call and each gets its own row back."""
import threading

import numpy as np
import pytest

from runtime.batcher import MicroBatcher
from tests.conftest import TINY_LABELS


def test_concurrent_requests_are_batched_and_answered_in_order():
    calls = []

    def fn(items):
        calls.append(len(items))
        return np.asarray([[x, -x] for x in items])

    b = MicroBatcher(fn, max_batch=16, wait_s=0.05)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, b(i))) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all((results[i] == [i, -i]).all() for i in range(16))
    assert max(calls) > 1 and sum(calls) == 16


def test_errors_reach_every_waiting_request():
    def fn(items):
        raise RuntimeError("boom")

    b = MicroBatcher(fn)
    with pytest.raises(RuntimeError, match="boom"):
        b("x")


def test_classifier_predict_one_matches_batch(tiny_classifier_export, tokenizer):
    from runtime.lm import OnnxClassifier

    clf = OnnxClassifier(tiny_classifier_export.onnx("fp32"), tokenizer, "fp32", "cpu")
    texts = ["shares jump", "a much longer headline about a bank that reported losses", "ok"]
    np.testing.assert_allclose(np.stack([clf.predict_one(t) for t in texts]), clf.predict_proba(texts), atol=1e-5)


def test_classifier_survives_concurrent_token_counts_and_batches(tiny_classifier_export, tokenizer):
    """Regression: a request thread counting tokens while the batcher thread pads the same fast tokenizer
    raised "RuntimeError: Already borrowed" under load (seen in the 30-second load run)."""
    from runtime.lm import OnnxClassifier

    clf = OnnxClassifier(tiny_classifier_export.onnx("fp32"), tokenizer, "fp32", "cpu")
    errors = []

    def counter(i):
        try:
            for j in range(3000):
                clf.count_tokens(f"headline {i} {j} about markets")
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(e))

    def asker(i):
        try:
            for j in range(60):
                p = clf.predict_one(f"headline {i} {j} " + "about markets " * (j % 7))
                assert p.shape == (len(TINY_LABELS),) and abs(p.sum() - 1) < 1e-5
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=f, args=(i,)) for i in range(4) for f in (counter, asker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
