"""bench.class_offsets: the offset grid finds a lean that is there and keeps offset 0 when there is none."""
import numpy as np


def _accuracy(y, pred):
    return float((y == pred).mean())


def test_an_offset_that_undoes_a_lean_is_found_first():
    from bench.class_offsets import best_offsets
    from tasks.base import classification_metric

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    logits = rng.normal(0, 1, (600, 3))
    logits[np.arange(600), y] += 2.0
    logits[:, 1] -= 1.5  # the model under-predicts class 1
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))

    (value, offsets), *_ = best_offsets(logp, y, _accuracy, [-2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2])

    assert value > _accuracy(y, logp.argmax(1)) + 0.03
    assert offsets[0] == 0 and offsets[1] > offsets[2]  # class 1 raised against class 2
    def recall_1(pred):
        return classification_metric(list(pred), list(y))["recall 1"]

    assert recall_1((logp + offsets).argmax(1)) > recall_1(logp.argmax(1))


def test_without_a_lean_offset_zero_stays_first():
    from bench.class_offsets import best_offsets

    y = np.array([0, 1, 0, 1])
    logp = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]]))

    (value, offsets), *_ = best_offsets(logp, y, _accuracy, [-0.1, 0.0, 0.1])

    assert value == 1.0 and not np.any(offsets)  # three offsets tie at 1.0: the smallest shift is kept
