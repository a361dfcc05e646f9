"""The dashboard, driven headless through its Python API (the browser test drives the page)."""

import threading

import pytest

from workbench.ui import Dashboard
from workbench.ui.dashboard import model_choices

from tests._models import smollm2_path


@pytest.fixture(scope="module")
def dash():
    smollm2_path()  # skip when the model package is missing
    d = Dashboard(roof_gbs=10.0)
    d.threads.value = 1
    d.max_tokens.value = 12
    d.load()
    return d


def test_choices_name_the_catalog_and_its_variants():
    names = model_choices()
    assert names[0] == "smollm2-135m" and "gemma3-270m" in names


def test_load_reports_what_it_did(dash):
    assert dash.model is not None and "loaded" in dash.status.value and "Fused" in dash.status.value
    assert dash.progress.value == 1.0 and dash.progress.bar_style == "success"


def test_steps_stream_tokens_and_redraw_the_charts(dash):
    dash.stepper = None
    dash.step()  # prefill, the first token, and its decode step (traced: the charts draw)
    assert len(dash.tokens) == 1 and dash.flame_fig.data
    dash.step()
    flame_before = [t.x for t in dash.flame_fig.data]
    assert len(dash.tokens) == 2 and dash.flame_fig.data and dash.bandwidth_fig.data
    roof = [s for s in dash.bandwidth_fig.layout.shapes if s.y0 == s.y1]
    assert roof and roof[0].y0 == 10.0  # the roof line is the bandwidth given
    dash.step()
    assert [t.x for t in dash.flame_fig.data] != flame_before  # updated in place, new step's times
    text_len = len(dash.text.value)
    dash.run(4, block=True)
    assert len(dash.tokens) == 7 and len(dash.text.value) > text_len


def test_run_to_the_end_then_a_new_generation(dash):
    dash.run(block=True)
    assert dash.stepper.done and "done" in dash.status.value
    first = list(dash.tokens)
    dash.run(block=True)  # a finished generation starts over from the prompt
    assert dash.tokens == first  # greedy: the same tokens


def test_stop_mid_run_leaves_the_model_usable(dash):
    dash.max_tokens.value = 200
    dash.stepper = None
    started = threading.Event()
    original = dash._after_step

    def after_step():
        original()
        started.set()

    dash._after_step = after_step
    try:
        dash.run()
        assert started.wait(60)
        dash.stop()
        assert not dash._thread.is_alive() and not dash.stepper.done
        assert not dash.load_button.disabled and dash.stop_button.disabled
    finally:
        dash._after_step = original
        dash.max_tokens.value = 12
    g = dash.model.generate("Hello", max_tokens=3)
    assert len(g.tokens) >= 1


def test_bad_input_shows_a_message_not_a_traceback(dash):
    d = Dashboard(roof_gbs=10.0)
    d.load_button.click()  # a click goes through the same guard as the UI
    assert d.model is not None
    d.source.value = "no-such-model"
    d.load_button.click()
    assert "error" in d.status.value and "no-such-model" in d.status.value
    empty = Dashboard(roof_gbs=10.0)
    empty.step_button.click()
    assert "press Load first" in empty.status.value
    dash.prompt.value = ""
    dash.stepper = None
    dash.step_button.click()
    assert "prompt" in dash.status.value
    dash.prompt.value = "Hello"
