"""What a page views, from its address: runs, plots and the time cursor."""

from __future__ import annotations

from streamvis._page.viewed import Viewed


def test_an_address_without_a_query_views_the_default_run_live() -> None:
    viewed = Viewed.from_query({}, "swissroll")
    assert viewed == Viewed(("swissroll",)) and viewed.live and viewed.shows("loss")


def test_runs_plots_and_a_step_come_from_the_query() -> None:
    query = {"run": [b"a", b"b", b"a"], "plot": [b"loss"], "step": [b"7", b"57"]}
    viewed = Viewed.from_query(query, "default")
    assert viewed.runs == ("a", "b") and viewed.run == "a"  # in order, each once
    assert viewed.shows("loss") and not viewed.shows("mu")
    assert viewed.step == 57 and not viewed.live  # the last step asked for


def test_a_step_that_is_not_a_number_is_ignored_and_said_so() -> None:
    viewed = Viewed.from_query({"step": [b"soon"], "run": [b""]}, "r")
    assert viewed.runs == ("r",) and viewed.live
    assert viewed.ignored == ("step='soon' (not a whole number)",)


def test_a_run_without_steps_is_viewed_at_a_time_after_its_first_frame() -> None:
    viewed = Viewed.from_query({"time": [b"12.5"]}, "r")
    assert viewed.time == 12.5 and viewed.step is None and not viewed.live
    ignored = Viewed.from_query({"time": [b"later", b"nan"]}, "r")
    assert ignored.live and ignored.ignored == ("time='later' (not a number of seconds)",)
