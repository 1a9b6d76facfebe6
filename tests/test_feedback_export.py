"""Feedback exports load with `datasets` and carry the columns TRL's SFT, DPO and KTO trainers read."""
import csv
from datetime import timedelta

import pytest

from feedback.export import ExportFilter, csv_safe, export_feedback

TRL_COLUMNS = {  # what TRL reads: SFTTrainer (prompt-completion / conversational), DPOTrainer, KTOTrainer
    "sft": {"prompt", "completion"},
    "sft_messages": {"messages"},
    "preference": {"prompt", "chosen", "rejected"},
    "kto": {"prompt", "completion", "label"},
}


@pytest.fixture
def filled(store):
    def ans(task, text, out, version="v1"):
        return store.record_answer(task=task, input_text=text, output=out, model_version=version, session_id="s",
                                   prompt=f"P:{text}", messages=[{"role": "system", "content": "sys"},
                                                                 {"role": "user", "content": text}]).id
    a = ans("qa", "where is my order", "no idea")
    store.add_feedback(a, "s", rating=-1, correction="It ships in 2 days.")
    b = ans("qa", "can I pay by card", "Yes, all major cards.")
    store.add_feedback(b, "s", rating=1)
    c = ans("sentiment", "great film", "negative", version="v2")
    store.add_feedback(c, "s", correction="positive")
    d = ans("qa", "hours?", "=1+1")
    store.add_feedback(d, "s", comment="@weird")
    return store


def test_every_file_loads_with_datasets_and_has_trl_columns(filled, tmp_path):
    from datasets import load_dataset

    written = export_feedback(filled, tmp_path)
    for name, cols in TRL_COLUMNS.items():
        for fmt in ("jsonl", "parquet"):
            ds = load_dataset("json" if fmt == "jsonl" else "parquet",
                              data_files=str(tmp_path / f"{name}.{fmt}"), split="train")
            assert cols <= set(ds.column_names), (name, fmt)
            assert len(ds) == written[f"{name}.{fmt}"] > 0
    sft = load_dataset("json", data_files=str(tmp_path / "sft.jsonl"), split="train")
    assert set(sft["completion"]) == {"It ships in 2 days.", "Yes, all major cards.", "positive"}
    msgs = load_dataset("json", data_files=str(tmp_path / "sft_messages.jsonl"), split="train")[0]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    pref = load_dataset("json", data_files=str(tmp_path / "preference.jsonl"), split="train")
    assert set(zip(pref["chosen"], pref["rejected"])) == {("It ships in 2 days.", "no idea"), ("positive", "negative")}
    kto = load_dataset("parquet", data_files=str(tmp_path / "kto.parquet"), split="train")
    assert sorted(kto["label"]) == [False, True]


def test_filters_by_task_version_and_time(filled, tmp_path):
    from feedback.store import now

    assert export_feedback(filled, tmp_path / "a", ExportFilter(task="sentiment"))["all.csv"] == 1
    assert export_feedback(filled, tmp_path / "b", ExportFilter(model_version="v1"))["all.csv"] == 3
    assert export_feedback(filled, tmp_path / "c", ExportFilter(since=now() + timedelta(hours=1)))["all.csv"] == 0
    assert export_feedback(filled, tmp_path / "d", ExportFilter(until=now() + timedelta(hours=1)))["all.csv"] == 4


def test_csv_neutralises_formulas(filled, tmp_path):
    export_feedback(filled, tmp_path)
    with open(tmp_path / "all.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    weird = next(r for r in rows if r["input_text"] == "hours?")
    assert weird["output"] == "'=1+1" and weird["comment"] == "'@weird"
    assert csv_safe("-2") == "'-2" and csv_safe("+x") == "'+x" and csv_safe("plain") == "plain"


def test_a_corrected_answer_is_retrained_with_the_options_it_was_made_with(store, tmp_path):
    from export.train import load_extra
    from tasks import REGISTRY

    a = store.record_answer(task="translate", input_text="Save the file.", output="Guarda el archivo.",
                            model_version="v1", session_id="s", prompt="P",
                            settings={"temperature": 0.0, "direction": "English → Chinese"}).id
    store.add_feedback(a, "s", correction="保存文件。")
    export_feedback(store, tmp_path)
    (row,) = load_extra(tmp_path, REGISTRY["translate"])
    assert (row["text"], row["target"], row["options"]["direction"]) == ("Save the file.", "保存文件。",
                                                                          "English → Chinese")
