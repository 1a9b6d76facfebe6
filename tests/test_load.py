"""The 30-second load run (the on-demand one is `python -m bench.load --seconds 300`): 32 concurrent
gradio_client users on loopback mixing every tab and feedback; no errors, no lost feedback rows."""
import pytest


@pytest.mark.timeout(600)
def test_30_second_load_run_loses_nothing(app_server):
    from bench.load import run

    db = str(app_server.store.engine.url)
    report = run(app_server.url, users=32, seconds=30, db=db)
    print(report)
    assert report["requests"] > 32
    assert report["errors"] == 0, report["error_samples"]
    assert report["feedback_acknowledged"] > 0
    assert report["feedback_rows_missing"] == 0
    assert set(report["by_kind"]) >= {"sentiment", "finnews", "feedback"}


def test_load_script_refuses_non_loopback_targets():
    from bench.load import run

    with pytest.raises(SystemExit, match="loopback"):
        run("http://10.0.0.1:7860/", users=1, seconds=1)
