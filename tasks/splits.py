"""Dataset plumbing shared by the task modules: package data lookup, dedup, fixed-seed splits, split hashes."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parent.parent
DATA_FILES = Path(__file__).resolve().parent / "data"  # small data the project writes itself (committed)
APT_LISTS = ROOT / "data" / "apt-lists"  # fetched by scripts/install_data.sh (git-ignored)


class DataMissing(FileNotFoundError):
    """A data source is not installed; the message says which script installs it."""


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it (some data packages import heavy deps)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataMissing(f"package {name} is not installed: run scripts/install_data.sh")
    return Path(list(spec.submodule_search_locations)[0])


def norm_key(text: str) -> str:
    """Dedup key: case, accents-as-composed, whitespace and punctuation differences do not make a new text."""
    t = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\W_]+", " ", t).strip()


def dedupe(items: Iterable[dict], key: Callable[[dict], str]) -> list[dict]:
    seen, out = set(), []
    for it in items:
        k = norm_key(key(it))
        if k and k not in seen:
            seen.add(k)
            out.append(it)
    return out


@dataclass
class Splits:
    """Train / validation / test examples and where they came from."""

    train: list[dict]
    val: list[dict]
    test: list[dict]
    sources: list[dict] = field(default_factory=list)  # {name, detail, license, count}
    extra: dict = field(default_factory=dict)  # task-specific (e.g. out-of-scope questions)

    def card(self) -> dict:
        def digest(rows):
            h = hashlib.sha256()
            for r in rows:
                h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode())
            return h.hexdigest()[:16]

        return {"sources": self.sources,
                "splits": {n: {"size": len(r), "sha256_16": digest(r)}
                           for n, r in (("train", self.train), ("val", self.val), ("test", self.test))}}


def split(items: list[dict], seed: int, n_test: int, n_val: int) -> tuple[list[dict], list[dict], list[dict]]:
    """Shuffle with a fixed seed, then cut test, validation and train (in that order)."""
    items = list(items)
    random.Random(seed).shuffle(items)
    return items[n_test + n_val:], items[n_test:n_test + n_val], items[:n_test]


def group_split(items: list[dict], group: Callable[[dict], str], seed: int, test_frac: float,
                val_frac: float) -> tuple[list[dict], list[dict], list[dict]]:
    """Split so that every item of one group (e.g. one KB entry's paraphrases) lands in the same split."""
    groups = sorted({group(i) for i in items})
    random.Random(seed).shuffle(groups)
    n_test, n_val = int(len(groups) * test_frac), int(len(groups) * val_frac)
    test_g, val_g = set(groups[:n_test]), set(groups[n_test:n_test + n_val])
    tr = [i for i in items if group(i) not in test_g | val_g]
    return tr, [i for i in items if group(i) in val_g], [i for i in items if group(i) in test_g]


def hash_bucket(seed: int, key: str) -> float:
    """Where a key falls in [0, 1): hash_split's test split is the keys below test_frac."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:12], 16) / 16 ** 12


def hash_split(items: list[dict], key: Callable[[dict], str], seed: int, test_frac: float,
               val_frac: float) -> tuple[list[dict], list[dict], list[dict]]:
    """Split by a hash of each item's key: an item's split never depends on which other items exist, so a
    source that grows (Debian's description lists change every few days) adds rows to every split but never
    moves a test item into training. Each split keeps a stable order (by hash), so "the first n" stays put."""
    def bucket(item) -> float:
        return hash_bucket(seed, key(item))

    ranked = sorted(items, key=bucket)
    b = [bucket(i) for i in ranked]
    n_test = sum(x < test_frac for x in b)
    n_val = sum(x < test_frac + val_frac for x in b) - n_test
    return ranked[n_test + n_val:], ranked[n_test:n_test + n_val], ranked[:n_test]


def leaks(splits: Splits, field_name: str | None = None) -> list[str]:
    """Test texts that also appear (after normalisation) in train or validation: must be empty. The field is
    the split's `extra['leak_key']` (default "text"; generation checks its targets: prompts may repeat)."""
    field_name = field_name or splits.extra.get("leak_key", "text")
    seen = {norm_key(r[field_name]) for r in splits.train + splits.val}
    return [r[field_name] for r in splits.test if norm_key(r[field_name]) in seen]
