"""bench.sentiment_domains: VADER's rated snippets as labelled rows."""
import pytest


def test_ratings_become_labels_and_neither_is_left_out(tmp_path):
    from bench.sentiment_domains import read_rated

    f = tmp_path / "tweets_GroundTruth.txt"
    f.write_bytes(b"id\tsentiment\ttext\r\n"
                  b"1\t2.7\tSo lucky.\r\n"
                  b"2\t-1.9\tWorst   day\tever.\r\n"   # a tab inside the text stays text; spaces collapse
                  b"3\t0.4\tIt is Tuesday.\r\n"         # neither: left out
                  b"4\t-0.5\tMeh.\r\n"                  # on the cut: negative
                  b"5\t0.5\tOK then.\r\n"               # on the cut: positive
                  b"6\t1.2\tSo lucky.\r\n"              # the same text again: left out
                  b"7\tn/a\tbroken row\r\n"
                  b"8\t1.0\r\n")
    rows = read_rated(f, "tweets")

    assert rows == [{"text": "So lucky.", "label": "positive", "domain": "tweets"},
                    {"text": "Worst day ever.", "label": "negative", "domain": "tweets"},
                    {"text": "Meh.", "label": "negative", "domain": "tweets"},
                    {"text": "OK then.", "label": "positive", "domain": "tweets"}]


def test_missing_files_say_which_script_fetches_them(tmp_path):
    from bench.sentiment_domains import vader_rows
    from tasks.splits import DataMissing

    with pytest.raises(DataMissing, match="install_data.sh"):
        vader_rows(tmp_path)
