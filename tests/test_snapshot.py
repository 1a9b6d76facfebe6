"""Feedback snapshots through huggingface_hub.CommitScheduler, committed into a local folder stand-in."""
from datasets import load_dataset


def test_snapshot_commits_loadable_exports(store, tmp_path):
    from feedback.snapshot import FeedbackSnapshots

    a = store.record_answer(task="qa", input_text="q", output="a", model_version="v", session_id="s").id
    store.add_feedback(a, "s", rating=1)
    target = tmp_path / "hub"
    snaps = FeedbackSnapshots(store, f"file://{target}", every_minutes=60, work_dir=tmp_path / "work")
    try:
        snaps.snapshot()
        committed = target / "feedback" / "latest"
        assert load_dataset("json", data_files=str(committed / "sft.jsonl"), split="train")["completion"] == ["a"]
        b = store.record_answer(task="qa", input_text="q2", output="b", model_version="v", session_id="s").id
        store.add_feedback(b, "s", correction="better")
        snaps.snapshot()
        assert len(load_dataset("json", data_files=str(committed / "sft.jsonl"), split="train")) == 2
        assert len(snaps.api.commits) == 2
    finally:
        snaps.stop()
