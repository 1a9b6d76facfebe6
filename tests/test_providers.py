"""Provider and precision choice: CUDA only when a session really gets it; int8 on CPU; forced by env."""
import logging

import pytest

from runtime import providers


def test_cpu_host_gets_cpu_and_int8(monkeypatch):
    monkeypatch.setattr(providers, "cuda_usable", lambda: False)
    assert providers.choose_precision("auto", "auto", ["fp32", "int8"]) == "int8"
    assert providers.choose_precision("auto", "auto", ["fp32"]) == "fp32"
    assert providers.requested_providers("cpu") == [providers.CPU]


def test_cuda_host_gets_fp16(monkeypatch):
    monkeypatch.setattr(providers, "cuda_usable", lambda: True)
    assert providers.choose_precision("auto", "auto", ["fp32", "int8", "fp16"]) == "fp16"
    assert providers.choose_precision("auto", "cpu", ["fp32", "int8", "fp16"]) == "int8"


def test_forced_precision_and_bad_values(monkeypatch):
    monkeypatch.setattr(providers, "cuda_usable", lambda: False)
    assert providers.choose_precision("fp32", "auto", ["fp32", "int8"]) == "fp32"
    with pytest.raises(FileNotFoundError):
        providers.choose_precision("fp16", "auto", ["fp32", "int8"])
    with pytest.raises(ValueError):
        providers.choose_precision("int3", "auto", ["fp32"])
    with pytest.raises(ValueError):
        providers.requested_providers("tpu")


def test_this_host_really_gets_what_it_reports(tiny_lm_export, caplog):
    """A session gets CUDA only where the probe got it, else the CPU; the log says what was really got."""
    caplog.set_level(logging.INFO, logger="runtime.providers")
    sess, placement = providers.open_session(tiny_lm_export.onnx("fp32"), "fp32", "auto")
    assert placement.provider == sess.get_providers()[0]
    assert placement.provider == (providers.CUDA if providers.cuda_usable() else providers.CPU)
    assert any("got" in r.message and placement.provider in r.message for r in caplog.records)


def test_int8_never_asks_for_cuda(tiny_lm_export):
    _, placement = providers.open_session(tiny_lm_export.onnx("int8"), "int8", "cuda")
    assert placement.requested == (providers.CPU,)


def test_classifier_sessions_do_not_spin_and_lm_sessions_do(tiny_classifier_export, tiny_lm_export, tokenizer):
    from runtime.lm import OnnxCausalLM, OnnxClassifier

    def spin_setting(session):
        try:
            return session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
        except Exception:  # noqa: BLE001 - not set: ORT's default, which spins
            return "default"

    clf = OnnxClassifier(tiny_classifier_export.onnx("fp32"), tokenizer, "fp32", "cpu")
    lm = OnnxCausalLM(tiny_lm_export.onnx("fp32"), tokenizer, "fp32", "cpu")
    assert spin_setting(clf.session) == "0"
    assert spin_setting(lm.session) == "default"
