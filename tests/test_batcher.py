"""Server-side micro-batching: concurrent requests share one call and each gets its own row back."""
import threading

import numpy as np
import pytest

from runtime.batcher import MicroBatcher


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
