"""The notebook dashboard: pick a model and its knobs, decode step by step, watch the cost.

`Dashboard()` lays out ipywidgets: model (catalog names, derived variants, or a path),
profile, quantization threshold and type, threads, prompt, max tokens and sampling;
buttons Load, Step, Run and Stop; the generated text; and two plotly `FigureWidget`s,
the flame chart of the last decode step and GB/s per op against the machine's read
bandwidth, updated in place (`batch_update`) after every step.

Run decodes on a background thread, so the notebook's kernel stays free to take the
Stop click; Stop ends the run between two steps and the model stays usable. The worker
sets numba's thread count to the slider's value on its own thread (numba's count is
per thread; the model re-applies its `threads` at every step, so moving the slider
mid-run takes effect at the next step). Run while a run is going is refused with a
message (one worker at a time); Run after Stop continues the same generation, and after
it finished starts a new one; Load stops a run first and the old generation is dropped.
Another user of the same `Model` (a second dashboard, a notebook cell) waits for the
current step, and if it starts its own generation this dashboard's stops with a message
(`StaleStepperError`): never two generations in one KV cache.

Every handler turns a `WorkbenchError` (bad model name, bad threshold, ...) into a
message in the dashboard instead of a traceback. The same actions are methods (`load`,
`step`, `run`, `stop`) so tests and notebooks can drive it without a browser.
"""

from __future__ import annotations

import html
import threading

import ipywidgets as W
import plotly.graph_objects as go

import workbench
from workbench.engine.options import PROFILES
from workbench.errors import WorkbenchError
from workbench.formats.catalog import DEFAULT_MODEL, catalog
from workbench.kernels.jit import max_threads, set_threads
from workbench.nn.options import QUANT_TYPES
from workbench.trace import Tracer
from workbench.viz import bandwidth, flame

THRESHOLDS = ["off", "0", "256", "512", "576", "640", "768", "1024", "2048"]
DEFAULT_PROMPT = "The three most important ideas in computer science are"


def model_choices() -> list[str]:
    """Catalog names, then the derived variants workbench can make offline."""
    names = [e.name for e in catalog() if e.offline]
    try:
        from workbench.convert import variants

        names += [v for v in variants() if v not in names]
    except ImportError:  # conversion not available: catalog names only
        pass
    return names


class Dashboard:
    """ipywidgets front end over `workbench.load` and `Model.start`; display it in a cell."""

    def __init__(self, source: str = DEFAULT_MODEL, prompt: str = DEFAULT_PROMPT, roof_gbs: float | None = None):
        style = {"description_width": "initial"}
        self.source = W.Combobox(value=source, options=model_choices(), description="model", ensure_option=False,
                                 style=style, layout=W.Layout(width="320px"))
        self.profile = W.Dropdown(options=list(PROFILES), value="optimized", description="profile", style=style)
        self.threshold = W.Dropdown(options=THRESHOLDS, value="off", description="quant threshold", style=style)
        self.quant_type = W.Dropdown(options=list(QUANT_TYPES), value="q8_0", description="quant type", style=style)
        self.threads = W.IntSlider(value=max_threads(), min=1, max=max_threads(), description="threads", style=style)
        self.prompt = W.Textarea(value=prompt, description="prompt", layout=W.Layout(width="98%", height="60px"))
        self.max_tokens = W.IntSlider(value=32, min=1, max=256, description="max tokens", style=style)
        self.temperature = W.FloatSlider(value=0.0, min=0.0, max=2.0, step=0.05, description="temperature",
                                         style=style)
        self.top_k = W.IntText(value=0, description="top-k (0: off)", style=style, layout=W.Layout(width="160px"))
        self.top_p = W.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top-p", style=style)
        self.seed = W.IntText(value=0, description="seed", style=style, layout=W.Layout(width="140px"))
        self.load_button = W.Button(description="Load", button_style="primary", icon="download")
        self.step_button = W.Button(description="Step", icon="step-forward")
        self.run_button = W.Button(description="Run", button_style="success", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, description="", layout=W.Layout(width="200px"))
        self.status = W.HTML(value="Pick a model and press Load.")
        self.text = W.HTML(value="", layout=W.Layout(width="98%", min_height="60px", border="1px solid #ddd",
                                                      padding="4px"))
        self.flame_fig = go.FigureWidget(layout={"title": "flame: last decode step", "height": 420})
        self.bandwidth_fig = go.FigureWidget(layout={"title": "GB/s per op", "height": 380})

        self.model = None
        self.stepper = None
        self.tracer = None
        self.roof_gbs = roof_gbs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one step at a time, whoever asks
        self._starting = threading.Lock()  # one check-and-start of a worker at a time

        self.load_button.on_click(lambda _b: self._guard(self.load))
        self.step_button.on_click(lambda _b: self._guard(self.step))
        self.run_button.on_click(lambda _b: self._guard(self.run))
        self.stop_button.on_click(lambda _b: self.stop())
        self.threads.observe(self._threads_changed, names="value")

        knobs = W.VBox([W.HBox([self.source, self.profile, self.threads]),
                        W.HBox([self.threshold, self.quant_type]),
                        self.prompt,
                        W.HBox([self.max_tokens, self.temperature]),
                        W.HBox([self.top_k, self.top_p, self.seed])])
        buttons = W.HBox([self.load_button, self.step_button, self.run_button, self.stop_button, self.progress])
        self.widget = W.VBox([knobs, buttons, self.status, self.text, self.flame_fig, self.bandwidth_fig])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # -- actions ----------------------------------------------------------------------

    def _guard(self, action, *args) -> None:
        """Run a handler; bad input becomes a message in the dashboard, never a traceback."""
        try:
            action(*args)
        except WorkbenchError as e:
            self._say(f"<b style='color:#b00'>error:</b> {html.escape(str(e))}")
        except Exception as e:  # a bug: still shown here, not lost in the kernel log
            self._say(f"<b style='color:#b00'>internal error ({type(e).__name__}):</b> {html.escape(str(e))}")

    def _say(self, message: str) -> None:
        self.status.value = message

    def load(self) -> None:
        """Load the chosen model with the chosen options (replacing any loaded one; a run
        is stopped first)."""
        self.stop()
        if self._running():
            raise WorkbenchError("the run did not stop in time; press Load again")
        threshold = None if self.threshold.value == "off" else int(self.threshold.value)
        self.progress.bar_style, self.progress.value = "info", 0.2
        self._say(f"loading {html.escape(self.source.value)} ...")
        try:
            self.model = workbench.load(self.source.value.strip(), profile=self.profile.value,
                                        quant_threshold=threshold, quant_type=self.quant_type.value,
                                        threads=self.threads.value)
        except Exception:
            self.progress.bar_style, self.progress.value = "danger", 1.0
            raise
        self.progress.bar_style, self.progress.value = "success", 1.0
        if self.roof_gbs is None:
            self.roof_gbs = workbench.machine_bandwidth().gbps("read", self.model.threads)
        self.stepper = None
        self.text.value = ""
        report = "; ".join(self.model.load_report.lines())
        self._say(f"loaded {html.escape(self.model.path.name)}: {html.escape(report)}")

    def _new_generation(self) -> None:
        if self.model is None:
            raise WorkbenchError("press Load first: no model is loaded")
        top_k = self.top_k.value or None
        top_p = self.top_p.value if self.top_p.value < 1.0 else None
        self.stepper = self.model.start(self.prompt.value, max_tokens=self.max_tokens.value,
                                        temperature=self.temperature.value, top_k=top_k, top_p=top_p,
                                        seed=self.seed.value)
        self.tracer = Tracer("op", {"model": str(self.model.path), "threads": self.model.threads,
                                    "read_gbps": self.roof_gbs})
        self.text.value = f"<span style='color:#777'>{html.escape(self.prompt.value)}</span>"

    def step(self) -> str | None:
        """One decode step (starting a new generation if none is running); the piece made."""
        with self._lock:
            if self.stepper is None or self.stepper.done:
                self._new_generation()
            out = self.stepper.step(self.tracer)
        if out is not None:
            self.text.value += html.escape(out[0])
        self._after_step()
        return None if out is None else out[0]

    def run(self, n: int | None = None, block: bool = False) -> None:
        """Decode up to `n` steps (default: until done) on a background thread; `block`
        waits for it (tests, scripts). Continues an unfinished generation."""
        with self._starting:
            if self._running():
                raise WorkbenchError("a run is already going: press Stop first")
            if self.stepper is None or self.stepper.done:
                self._new_generation()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, args=(n, self.stepper, self.threads.value),
                                            daemon=True)
            self._set_running(True)
            self._thread.start()
        if block:
            self._thread.join()

    def _run(self, n: int | None, stepper, threads: int) -> None:
        set_threads(threads)  # numba's thread count is per thread: this one's starts at numba's default
        try:
            done = 0
            while not self._stop.is_set() and not stepper.done and (n is None or done < n):
                if self.stepper is not stepper:  # a Load or a new generation replaced it
                    break
                self.step()
                done += 1
        except Exception as e:
            self._say(f"<b style='color:#b00'>error:</b> {html.escape(str(e))}")
        finally:
            self._set_running(False)

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """End a run between two steps; the model and the text so far stay."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)
        if not self._running():
            self._set_running(False)

    def _set_running(self, running: bool) -> None:
        # each change reaches the page as its own message, in order: Load, Step and Run are
        # disabled before Stop is enabled, and Stop disabled before they are enabled again,
        # so that the page never shows Stop and Load enabled together (a browser test caught
        # that moment at the start of a run)
        others = (self.load_button, self.step_button, self.run_button)
        if running:
            for b in others:
                b.disabled = True
            self.stop_button.disabled = False
        else:
            self.stop_button.disabled = True
            for b in others:
                b.disabled = False

    def _threads_changed(self, change) -> None:
        if self.model is not None:
            self._guard(setattr, self.model, "threads", change["new"])

    # -- charts -----------------------------------------------------------------------

    def _after_step(self) -> None:
        s = self.stepper
        if s.done:
            reason = {"stop": "end of generation", "length": "max tokens", "context": "context full"}
            self._say(f"done: {len(s.tokens)} tokens ({reason.get(s.finish_reason, s.finish_reason)}), "
                      f"{_tok_s(s)}")
        elif s.step_seconds:
            self._say(f"{len(s.tokens)} tokens, {_tok_s(s)}")
        if s.step_seconds:  # a decode step was traced: redraw
            _replace(self.flame_fig, flame(self.tracer))
            _replace(self.bandwidth_fig, bandwidth(self.tracer, self.roof_gbs))

    @property
    def tokens(self) -> list[int]:
        return [] if self.stepper is None else list(self.stepper.tokens)


def _tok_s(s) -> str:
    return f"{len(s.step_seconds) / sum(s.step_seconds):.1f} tok/s decode (traced)" if s.step_seconds else ""


def _replace(widget: go.FigureWidget, fig: go.Figure) -> None:
    """Show `fig` in `widget` in place: one batch of updates when the traces line up."""
    if len(widget.data) == len(fig.data) and all(a.type == b.type for a, b in zip(widget.data, fig.data)):
        with widget.batch_update():
            for old, new in zip(widget.data, fig.data):
                old.update(new.to_plotly_json(), overwrite=True)
            widget.layout.update(fig.layout.to_plotly_json(), overwrite=True)
        return
    with widget.batch_update():
        widget.data = ()
    widget.add_traces(list(fig.data))
    with widget.batch_update():
        widget.layout.update(fig.layout.to_plotly_json(), overwrite=True)

