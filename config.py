"""Settings read from the environment, in one small dataclass."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MIN_ADMIN_TOKEN_CHARS = 16  # shorter tokens are guessable within the admin-attempt backoff


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


@dataclass(frozen=True)
class Settings:
    # Where rebuilt, git-ignored artefacts live (base checkpoint, ONNX exports).
    models_dir: Path = field(default_factory=lambda: Path(_env("NLPAPP_MODELS_DIR", str(ROOT / "models"))))
    # Base GPT for every task: a pinned base from export/base_files.py ("smollm2-135m", "qwen2.5-coder-0.5b"),
    # checked by sha256, or a local HF folder (unverified). Unset (the default): each task uses its own base,
    # the one its adapter was trained on (TrainConfig.base in its task module).
    base_model: str = field(default_factory=lambda: _env("NLPAPP_BASE_MODEL", ""))
    # auto | cpu | cuda: force an execution provider.
    provider: str = field(default_factory=lambda: _env("NLPAPP_PROVIDER", "auto").lower())
    # auto | fp32 | int8 | fp16: force a precision (auto: int8 on CPU, fp16 on CUDA).
    precision: str = field(default_factory=lambda: _env("NLPAPP_PRECISION", "auto").lower())
    # Longest prompt (in tokens) a task sends to the model; longer input is cut with a notice.
    max_input_tokens: int = field(default_factory=lambda: int(_env("NLPAPP_MAX_INPUT_TOKENS", "768")))
    # Hard cap on generated tokens whatever a client asks for.
    max_new_tokens_cap: int = field(default_factory=lambda: int(_env("NLPAPP_MAX_NEW_TOKENS_CAP", "512")))
    # Feedback database: any SQLAlchemy URL; default SQLite in data/ (WAL).
    data_dir: Path = field(default_factory=lambda: Path(_env("NLPAPP_DATA_DIR", str(ROOT / "data"))))
    database_url: str = field(default_factory=lambda: _env("DATABASE_URL", ""))
    # Export and destructive actions need this token; unset = admin actions are refused.
    admin_token: str = field(default_factory=lambda: os.environ.get("NLPAPP_ADMIN_TOKEN", ""), repr=False)
    # Periodic snapshot of exported feedback to a Hub dataset repo (Spaces have ephemeral disks).
    snapshot_repo: str = field(default_factory=lambda: _env("NLPAPP_SNAPSHOT_REPO", ""))
    snapshot_minutes: float = field(default_factory=lambda: float(_env("NLPAPP_SNAPSHOT_MINUTES", "10")))
    # Requests allowed per client address per minute, by kind (0 = no limit), and from all clients together.
    generations_per_minute: int = field(default_factory=lambda: int(_env("NLPAPP_GENERATIONS_PER_MINUTE", "30")))
    classifications_per_minute: int = field(default_factory=lambda: int(_env("NLPAPP_CLASSIFICATIONS_PER_MINUTE",
                                                                              "120")))
    feedback_per_minute: int = field(default_factory=lambda: int(_env("NLPAPP_FEEDBACK_PER_MINUTE", "60")))
    global_requests_per_minute: int = field(default_factory=lambda: int(_env("NLPAPP_GLOBAL_REQUESTS_PER_MINUTE",
                                                                              "1200")))
    # Behind a reverse proxy: how many proxies in front of the app append to X-Forwarded-For (0: ignore the
    # header and use the connecting address; a client can write anything into that header).
    trusted_proxy_hops: int = field(default_factory=lambda: int(_env("NLPAPP_TRUSTED_PROXY_HOPS", "0")))
    # Answers (and their feedback) older than this many days are erased; 0 keeps them.
    retention_days: float = field(default_factory=lambda: float(_env("NLPAPP_RETENTION_DAYS", "0")))
    # shared | merged: how generation tasks serve their LoRA adapters. shared: one LoRA-ready graph per base,
    # each request applies its task's adapter (one base in memory, one export to build). merged: each task gets
    # its own export with the adapter merged in (a full copy of the base per task).
    adapters: str = field(default_factory=lambda: _env("NLPAPP_ADAPTERS", "shared").lower())
    # fused | optimum | auto: the shared base graph. fused: onnxruntime-genai's builder graph (GroupQueryAttention,
    # KV cache written in place; CPU only), decoded in place (runtime/gqa.py); optimum: the optimum export (its KV
    # cache is concatenated each step; fp16 + IO binding on CUDA). auto: fused on CPU hosts, optimum with CUDA.
    graph: str = field(default_factory=lambda: _env("NLPAPP_GRAPH", "auto").lower())
    # Generations decoded together in one step (continuous batching); more wait in the queue.
    max_batch: int = field(default_factory=lambda: int(_env("NLPAPP_MAX_BATCH", "8")))
    # Prompt tokens prefilled per step while others are decoding: bounds how long a long prompt holds their
    # streams up (~64 tokens of Qwen 0.5B int8 prefill is well under a second on 2 cores).
    prefill_chunk: int = field(default_factory=lambda: int(_env("NLPAPP_PREFILL_CHUNK", "64")))
    # Memory for the KV cache of recent prompts' beginnings (runtime.decoder.PrefixCache; fused graph only): a tab's
    # prompts share their system prompt, which is then prefilled once. 64 MB holds ~2,700 Qwen 0.5B positions.
    # 0 turns it off.
    prefix_cache_mb: float = field(default_factory=lambda: float(_env("NLPAPP_PREFIX_CACHE_MB", "64")))
    # Fused graph: greedy answers check up to this many tokens a step copied from their own prompt (prompt lookup:
    # where the answer's last tokens occur in the prompt, what follows them there) in one pass, and keep those the
    # model would have picked anyway. 0 turns it off.
    lookahead: int = field(default_factory=lambda: int(_env("NLPAPP_LOOKAHEAD", "8")))
    # Fused graph: one-token decode steps of up to 6 rows on the export's int8-decode companion (every projection
    # 4-bit: batch-1 decoding 87 -> 111 tok/s in one interleaved run), prompts still on int8; a task whose
    # validation lost on it (translation: Decoding.decode_graph) keeps its steps on int8. 0: every step on int8.
    decode_graph: bool = field(default_factory=lambda: _env("NLPAPP_DECODE_GRAPH", "1") not in ("0", "false", "off"))
    # Generation tasks whose one-token steps run on a decode graph with their adapter merged in (export/
    # merged_decode.py) when only their rows are in the step: batch-1 decoding without the LoRA nodes (12.4 against
    # 15.4 ms a step), for ~0.3-0.37 GB a task. On validation summarize lost 0.7 ROUGE-L with it, QA nothing, and
    # generate's quotes answered ~26% faster with its poems as often in form (its perplexity is scored by prefill,
    # on int8). Translation keeps its steps on int8 (its validation lost on 4-bit steps). Generate was left out while
    # it put the server at issue 13's memory bound (4.25 of 4.26 GB); since the classifiers' down_proj went 4-bit the
    # three hold 3.40 GB (BENCHMARKS.md, 2026-12-06).
    # Comma-separated task names, or "none"; `python -m export prepare` builds the graphs.
    merged_decode: tuple[str, ...] = field(default_factory=lambda: tuple(
        t.strip() for t in _env("NLPAPP_MERGED_DECODE", "qa,summarize,generate").split(",")
        if t.strip() and t.strip().lower() not in ("none", "0", "off")))
    # 1: let a tab's GPT reorder what its lookup found before answering (Task.rerank; customer service: close
    # knowledge-base candidates, ~1.5 s more on 2 CPU cores for a question that needs it). Off by default: on the
    # qa validation split it answered from the right entry no more often (65% with and without it; README).
    rerank: bool = field(default_factory=lambda: _env("NLPAPP_RERANK", "0") not in ("0", "false", "off"))
    # Threads per ONNX Runtime session (0 = let ORT choose).
    ort_threads: int = field(default_factory=lambda: int(_env("NLPAPP_ORT_THREADS", "0")))

    def __post_init__(self):
        if self.adapters not in ("shared", "merged"):
            raise ValueError(f"NLPAPP_ADAPTERS must be 'shared' or 'merged', not {self.adapters!r}")
        if self.graph not in ("fused", "optimum", "auto"):
            raise ValueError(f"NLPAPP_GRAPH must be 'fused', 'optimum' or 'auto', not {self.graph!r}")

    def db_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgres://"):  # Heroku/Spaces style: SQLAlchemy wants postgresql://
                url = "postgresql+psycopg://" + url[len("postgres://"):]
            elif url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://"):]
            return url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'feedback.sqlite3').resolve()}"


def settings() -> Settings:
    return Settings()
