"""The dashboard, driven headless through its Python API (the browser test drives the page)."""

import threading

import numba
import pytest

from workbench.kernels.jit import max_threads
from workbench.ui import Dashboard
from workbench.ui.dashboard import model_choices

from tests._models import gemma3_path, smollm2_path


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


# -- one worker, one generation (issue 20) -------------------------------------------

class _Hold:
    """Holds the dashboard's worker after its `at`-th step until released (the hook runs
    on the worker thread), noting numba's thread count there at every step."""

    def __init__(self, dash, at: int):
        self.dash, self.at, self.steps, self.threads = dash, at, 0, []
        self.reached, self.release = threading.Event(), threading.Event()
        self.original = dash._after_step

    def __enter__(self):
        def after_step():
            self.original()
            self.steps += 1
            self.threads.append(numba.get_num_threads())
            if self.steps == self.at:
                self.reached.set()
                assert self.release.wait(120)

        self.dash._after_step = after_step
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.dash.stop()
        self.dash._after_step = self.original


def test_run_pressed_twice_starts_one_worker(dash):
    dash.max_tokens.value, dash.stepper = 200, None
    with _Hold(dash, at=1) as hold:
        dash.run_button.click()
        assert hold.reached.wait(120)
        worker = dash._thread
        dash.run_button.click()  # the button is disabled in the page; from Python the guard says why
        assert "already going" in dash.status.value and dash._thread is worker
    dash.max_tokens.value = 12


def test_stop_then_run_continues_the_same_generation(dash):
    dash.stepper = None
    dash.run(block=True)
    whole = list(dash.tokens)  # greedy, undisturbed
    dash.stepper = None
    with _Hold(dash, at=3) as hold:
        dash.run()
        assert hold.reached.wait(120)
        dash._stop.set()  # Stop, as the button does, while the worker is between steps
    assert not dash._thread.is_alive() and len(dash.tokens) == 3 and not dash.stepper.done
    assert not dash.run_button.disabled and dash.stop_button.disabled
    dash.run(block=True)  # Run again: the same generation goes on
    assert dash.stepper.done and dash.tokens == whole


@pytest.mark.skipif(max_threads() < 2, reason="needs numba started with 2 threads or more")
@pytest.mark.parametrize("threads", [1, 2])
def test_the_worker_decodes_with_the_sliders_thread_count(dash, threads):
    dash.threads.value = threads
    numba.set_num_threads(3 - threads)  # the notebook thread's count must not be what the worker uses
    dash.stepper = None
    with _Hold(dash, at=0) as hold:
        dash.run(4, block=True)
    assert hold.threads and set(hold.threads) == {threads}
    dash.threads.value = 1


def test_a_second_user_of_the_model_stops_this_generation_with_a_message(dash):
    other = Dashboard(roof_gbs=10.0)
    other.model = dash.model  # a second dashboard on the same Model
    dash.stepper = None
    dash.step()
    other.step()  # its generation takes the KV cache
    dash.run(block=True)
    assert "superseded" in dash.status.value and len(dash.tokens) == 1
    dash.stepper = None
    dash.step()  # a new generation works
    assert len(dash.tokens) == 1


def test_switching_the_model_during_a_run(dash):
    gemma3_path()  # skip without the package
    old = dash.model
    dash.max_tokens.value, dash.stepper = 200, None
    started = threading.Event()
    original = dash._after_step
    dash._after_step = lambda: (original(), started.set())
    try:
        dash.run()
        assert started.wait(120)
        dash.source.value = "gemma3-270m"
        dash.load_button.click()  # stops the run, then loads
    finally:
        dash._after_step = original
        dash.max_tokens.value = 4
    assert not dash._thread.is_alive() and dash.model is not old and dash.model.config.arch == "gemma3"
    assert dash.stepper is None and "loaded" in dash.status.value
    dash.run(block=True)
    assert dash.stepper.done and dash.stepper.model is dash.model.net and 1 <= len(dash.tokens) <= 4
