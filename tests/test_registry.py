"""The model registry is a ledger: serialised writes across processes, history kept, a damaged file refused."""
import json
import multiprocessing as mp

import pytest

from runtime import registry
from runtime.registry import ModelKind, ModelVersion, RegistryCorrupt


def _mv(version: str, tmp_path) -> ModelVersion:
    folder = tmp_path / "exports" / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text("{}")
    return ModelVersion(version, ModelKind.LM, str(folder))


def _register_many(models_dir, tmp_path, worker: int, n: int) -> None:
    for i in range(n):
        registry.register(models_dir, "shared", _mv(f"w{worker}-{i}", tmp_path))
        registry.register(models_dir, f"task{worker}", _mv(f"t{worker}-{i}", tmp_path))


def test_two_processes_registering_at_once_lose_nothing(tmp_path):
    models = tmp_path / "models"
    n = 40
    procs = [mp.get_context("fork").Process(target=_register_many, args=(models, tmp_path, w, n)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    data = registry.load(models)
    assert set(data["tasks"]["shared"]["versions"]) == {f"w{w}-{i}" for w in (0, 1) for i in range(n)}
    for w in (0, 1):
        assert set(data["tasks"][f"task{w}"]["versions"]) == {f"t{w}-{i}" for i in range(n)}
    assert len(data["history"]) == 4 * n  # every registration left its record


def test_history_records_who_what_when_and_the_previous_version_and_rollback_restores(tmp_path):
    models = tmp_path / "models"
    registry.register(models, "sentiment", _mv("v1", tmp_path))
    registry.register(models, "sentiment", _mv("v2", tmp_path))
    h = registry.history(models, "sentiment")
    assert [(x["version"], x["previous"], x["current"]) for x in h] == [("v1", None, "v1"), ("v2", "v1", "v2")]
    assert all(x["at"] and "pid" in x["by"] and x["action"] == "register" for x in h)
    assert registry.rollback(models, "sentiment") == "v1"
    assert registry.current(models, "sentiment").version == "v1"
    assert registry.history(models, "sentiment")[-1]["action"] == "rollback"
    assert registry.rollback(models, "sentiment", "v2") == "v2"
    with pytest.raises(LookupError):
        registry.rollback(models, "sentiment", "v9")


@pytest.mark.parametrize("damage", ["truncated", "not json", "wrong shape", "empty"])
def test_a_damaged_registry_is_refused_and_not_overwritten(tmp_path, damage):
    models = tmp_path / "models"
    registry.register(models, "qa", _mv("v1", tmp_path))
    path = registry.registry_path(models)
    good = path.read_text()
    bad = {"truncated": good[: len(good) // 2], "not json": "\x00\x01garbage", "wrong shape": json.dumps([1, 2]),
           "empty": ""}[damage]
    path.write_text(bad)
    with pytest.raises(RegistryCorrupt, match="damaged"):
        registry.current(models, "qa")
    with pytest.raises(RegistryCorrupt):
        registry.register(models, "qa", _mv("v2", tmp_path))
    assert path.read_text() == bad  # nothing written over it: the versions can still be recovered by hand
    assert json.loads(path.with_name("registry.json.bak").read_text())["tasks"]["qa"]["current"] == "v1"


def test_model_kind_round_trips_through_the_file(tmp_path):
    models = tmp_path / "models"
    registry.register(models, "finnews", ModelVersion("c1", "classifier", str(_mv("c1", tmp_path).path)))
    mv = registry.current(models, "finnews")
    assert mv.kind is ModelKind.CLASSIFIER and json.loads(registry.registry_path(models).read_text())[
        "tasks"]["finnews"]["versions"]["c1"]["kind"] == "classifier"
