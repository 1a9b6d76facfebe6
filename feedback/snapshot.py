"""Periodic snapshots of exported feedback to a Hub dataset repo (a Space's disk is ephemeral).

On when NLPAPP_SNAPSHOT_REPO is set: every NLPAPP_SNAPSHOT_MINUTES the feedback is exported into a
folder that `huggingface_hub.CommitScheduler` pushes to that dataset repo (token: HF_TOKEN).
NLPAPP_SNAPSHOT_REPO=file:///some/folder commits into a local folder instead (tests, air-gapped hosts).
"""
from __future__ import annotations

import io
import logging
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class _RepoUrl:
    repo_id: str


class LocalFolderApi:
    """Stands in for `HfApi` where CommitScheduler uses it: commits copy files into target/<repo_id>/."""

    def __init__(self, target: Path):
        self.target = Path(target)
        self.commits: list[list[str]] = []
        self._pool = ThreadPoolExecutor(max_workers=1)

    def create_repo(self, repo_id: str, **_) -> _RepoUrl:
        (self.target / repo_id).mkdir(parents=True, exist_ok=True)
        return _RepoUrl(repo_id)

    def create_commit(self, repo_id: str, operations, commit_message: str = "", **_):
        paths = []
        for op in operations:
            dst = self.target / repo_id / op.path_in_repo
            dst.parent.mkdir(parents=True, exist_ok=True)
            src = op.path_or_fileobj
            if isinstance(src, (str, Path)):
                shutil.copyfile(src, dst)
            else:
                src.seek(0)
                data = src.read()
                dst.write_bytes(data if isinstance(data, bytes) else io.BytesIO(data).getvalue())
            paths.append(op.path_in_repo)
        self.commits.append(paths)
        return {"message": commit_message, "files": paths}

    def run_as_future(self, fn, *args, **kwargs) -> Future:
        return self._pool.submit(fn, *args, **kwargs)


class FeedbackSnapshots:
    """Exports feedback into the scheduler's folder, under its lock, then lets it commit."""

    def __init__(self, store, repo: str, every_minutes: float, work_dir: Path, token: str | None = None):
        from huggingface_hub import CommitScheduler

        self.store = store
        self.folder = Path(work_dir) / "snapshot"
        api = None
        if repo.startswith("file://"):
            api, repo = LocalFolderApi(Path(repo[len("file://"):])), "feedback"
        self.api = api
        self.scheduler = CommitScheduler(repo_id=repo, repo_type="dataset", folder_path=self.folder,
                                         every=every_minutes, private=True, token=token, hf_api=api)
        self._stop = threading.Event()
        self._every_s = every_minutes * 60

    def export_now(self) -> dict:
        from feedback.export import export_feedback

        with self.scheduler.lock:  # the scheduler never reads a half-written file
            return export_feedback(self.store, self.folder / "latest")

    def snapshot(self):
        """Export, then commit at once (also called by the timer)."""
        self.export_now()
        return self.scheduler.trigger().result()

    def start(self) -> None:
        def loop():
            while not self._stop.wait(self._every_s * 0.9):  # export just before each scheduled commit
                try:
                    self.export_now()
                except Exception:  # noqa: BLE001 - a failed snapshot must not stop the app
                    log.exception("feedback snapshot export failed")

        threading.Thread(target=loop, name="feedback-snapshots", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.scheduler.stop()


def start_snapshots(settings, store) -> FeedbackSnapshots | None:
    if not settings.snapshot_repo or store is None:
        return None
    import os

    snaps = FeedbackSnapshots(store, settings.snapshot_repo, settings.snapshot_minutes, settings.data_dir,
                              token=os.environ.get("HF_TOKEN") or None)
    snaps.start()
    log.info("feedback snapshots every %.0f min to %s", settings.snapshot_minutes, settings.snapshot_repo)
    return snaps
