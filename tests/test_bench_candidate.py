"""bench.candidate's table: a candidate is judged per group (direction, language) as well as on the whole."""


def test_flat_figures_keep_each_groups_figure_beside_the_whole():
    from bench.candidate import flat_figures
    from tasks.base import chrf
    from tasks.plans import per_group

    rows = [{"target": t, "options": {"direction": d}} for t, d in (
        ("Open the file.", "English → Spanish"), ("Save it.", "English → Spanish"),
        ("打开文件。", "English → Chinese"), ("保存。", "English → Chinese"))]
    preds = ["Open the file.", "Save them.", "打开文件", "关闭。"]
    scores = {**per_group(chrf, rows, preds, "direction"), "seconds": 3.0, "stale": True, "chrF everyday": 40.0}

    figures = flat_figures(scores)

    zh = chrf(preds[2:], [r["target"] for r in rows[2:]])["chrF"]
    assert figures["English → Chinese chrF"] == zh
    assert figures["English → Spanish chrF"] != zh
    assert figures["chrF"] == (figures["English → Chinese chrF"] + figures["English → Spanish chrF"]) / 2
    assert figures["chrF everyday"] == 40.0
    assert "seconds" not in figures and "stale" not in figures  # time and flags are not figures
