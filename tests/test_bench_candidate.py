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


def test_the_rule_names_every_figure_that_stops_a_candidate():
    from bench.candidate import judge

    committed = {"chrF": 52.46, "English → Chinese chrF": 32.60, "Spanish → English chrF": 62.81,
                 "English → Spanish chrF": 55.55, "chrF everyday": 47.11}
    better = {"chrF": 53.88, "English → Chinese chrF": 34.00, "Spanish → English chrF": 62.00,
              "English → Spanish chrF": 58.49, "chrF everyday": 46.86}
    assert judge(committed, better, "chrF", 1.0, ("English → Chinese chrF",)) == []

    traded = dict(better, **{"Spanish → English chrF": 61.32})  # 1.49 below: past a 1-point guard
    assert judge(committed, traded, "chrF", 1.0) == ["Spanish → English chrF 61.32 more than 1 below 62.81"]
    assert judge(committed, traded, "chrF", 2.0) == []

    worse = dict(better, **{"chrF": 52.40, "English → Chinese chrF": 32.0})
    why = judge(committed, worse, "chrF", 1.0, ("English → Chinese chrF",))
    assert why == ["chrF 52.40 not above 52.46", "English → Chinese chrF 32.00 below 32.60"]
