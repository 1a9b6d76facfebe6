"""Turn a committed LoRA adapter into a served model: merge into the base, export to ONNX with proof, register."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from runtime import registry
from runtime.registry import ModelKind
from tasks import TaskKind

log = logging.getLogger(__name__)

ADAPTERS = Path(__file__).resolve().parent.parent / "adapters"


def adapter_dir(task: str) -> Path:
    return ADAPTERS / task


def adapter_version(task: str, folder: Path | None = None) -> str:
    folder = folder or adapter_dir(task)
    h = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        h.update((folder / name).read_bytes())
    return f"{task}-{h.hexdigest()[:8]}"


def has_adapter(task: str, folder: Path | None = None) -> bool:
    folder = folder or adapter_dir(task)
    return (folder / "adapter_model.safetensors").exists()


class BaseMismatch(RuntimeError):
    """An adapter recorded as trained on one base file, asked to merge into another (or an unverified one)."""


def adapter_base_sha256(folder: Path) -> str:
    """The sha256 of the base GGUF the adapter was trained on, from its adapter_meta.json ("" if not recorded)."""
    try:
        return json.loads((Path(folder) / "adapter_meta.json").read_text()).get("base_sha256", "")
    except (OSError, ValueError):
        return ""


def write_adapter_meta(folder: Path, base_dir: Path) -> dict:
    """Record the base the adapter was just trained on (beside it; the version hash does not cover this file)."""
    from export.base_model import prepared_info

    info = prepared_info(base_dir)
    meta = {"base": info.get("base", str(base_dir)), "base_file": info.get("file", ""),
            "base_sha256": info.get("base_sha256", "")}
    (Path(folder) / "adapter_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def base_refusal(folder: Path, base_sha: str, version: str = "") -> str:
    """Why this adapter must not be merged into a base with hash `base_sha` ("" when it may)."""
    trained_on = adapter_base_sha256(folder)
    if not trained_on or trained_on == base_sha:
        return ""  # matching, or an adapter that records no base (a test's, or one trained by hand)
    this = f"this base is {base_sha[:8]}" if base_sha else "this base is an unverified local folder"
    return f"adapter {version or Path(folder).name} was trained on a different base: {trained_on[:8]}, {this}"


def merge(task, base_dir: Path, folder: Path, out: Path) -> Path:
    """Base + adapter -> a dense checkpoint (git-ignored), cached by adapter version."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from export.base_model import save_tokenizer

    if (out / "MERGED").exists():
        return out
    tok = AutoTokenizer.from_pretrained(base_dir)
    if task.kind == TaskKind.CLASSIFY:
        model = AutoModelForSequenceClassification.from_pretrained(
            base_dir, num_labels=len(task.labels), id2label=dict(enumerate(task.labels)),
            label2id={l: i for i, l in enumerate(task.labels)}, dtype=torch.float32)
        model.config.pad_token_id = tok.pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, folder).merge_and_unload()
    model = model.float()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    save_tokenizer(tok, tmp)
    (tmp / "MERGED").write_text(str(folder))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def build_tuned_version(task, base_dir: Path, models_dir: Path, folder: Path | None = None,
                        register: bool = True, shared: bool = False,
                        graph: str = "optimum") -> registry.ModelVersion:
    """Export (LM or classifier), check, and (with `register`) make it the task's current version.

    `shared` (generation tasks): the adapter is applied at run time to the one LoRA-ready graph of its base,
    which every generation task shares; otherwise it is merged into a copy of the base and exported alone."""
    from export.base_model import base_sha256
    from export.onnx_export import export_model

    folder = folder or adapter_dir(task.name)
    version = adapter_version(task.name, folder)
    base_sha = base_sha256(base_dir)
    refusal = base_refusal(folder, base_sha, version)
    if refusal:
        raise BaseMismatch(refusal)
    if shared and task.kind != TaskKind.CLASSIFY:
        mv = shared_adapter_version(folder, version, base_dir, models_dir, base_sha, graph)
        where = f"adapter on the shared base graph {mv.path}"
    else:
        merged = merge(task, base_dir, folder, Path(models_dir) / "merged" / version)
        kind = ModelKind.CLASSIFIER if task.kind == TaskKind.CLASSIFY else ModelKind.LM
        result = export_model(merged, Path(models_dir) / "onnx", kind)
        mv = registry.ModelVersion(version=version, kind=kind, path=str(result.path), tuned=True,
                                   base_model=str(base_dir), metrics=_metrics(folder), base_sha256=base_sha)
        where = str(result.path)
    if register:
        registry.register(models_dir, task.name, mv)
        log.info("registered %s for %s (%s)", version, task.name, where)
    return mv


def _metrics(folder: Path) -> dict:
    """The adapter's recorded held-out metrics ({} for an adapter without them)."""
    path = Path(folder) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def shared_adapter_version(folder: Path, version: str, base_dir: Path, models_dir: Path,
                           base_sha: str, graph: str = "optimum") -> registry.ModelVersion:
    """The adapter copied under the models folder (immutable per version) and checked on the base's LoRA-ready
    graph against PyTorch + PEFT (fp32: equal greedy tokens; int8: logit cosine), checks cached beside it."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from export.lora_graph import export_shared_base
    from export.onnx_export import Tolerance, _load_torch, _untie_lm_head, check_export, quiet_export

    result = export_shared_base(base_dir, Path(models_dir) / "onnx", graph)
    served = Path(models_dir) / "adapters" / version
    checks_file = served / f"checks-{result.path.name}.json"  # per graph (base and patch format)
    if not checks_file.exists():
        tmp = served.with_name(served.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in Path(folder).iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        with quiet_export(), torch.no_grad():
            model = _load_torch(base_dir, "lm")
            _untie_lm_head(model)  # as exported (same values; PEFT does not touch lm_head)
            model = PeftModel.from_pretrained(model, tmp).eval()
            checks = check_export(result, model, AutoTokenizer.from_pretrained(base_dir), Tolerance(), adapter=tmp)
        (tmp / checks_file.name).write_text(json.dumps(checks, indent=1))
        shutil.rmtree(served, ignore_errors=True)
        tmp.rename(served)
    return registry.ModelVersion(version=version, kind=ModelKind.LM, path=str(result.path), tuned=True,
                                 base_model=str(base_dir), metrics=_metrics(folder), base_sha256=base_sha,
                                 adapter=str(served))
