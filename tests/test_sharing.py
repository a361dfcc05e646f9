"""One `Model` shared by several Python threads and steppers (issue 20, point 1).

The contract (api.py, engine/session.py): calls wait their turn and each returns what it
would have returned alone; a stepper whose KV cache a later call took refuses to step
with `StaleStepperError`; numba's thread count is applied on whichever thread steps.
"""

import threading

import numba
import pytest

import workbench
from workbench.errors import ParameterError, StaleStepperError
from tests._models import smollm2_path

PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):"]


@pytest.fixture(scope="module")
def model():
    return workbench.load(smollm2_path(), threads=1, n_ctx=96)


@pytest.fixture(scope="module")
def alone(model):
    """Each prompt's tokens, generated with nobody else around (greedy, and seeded sampling)."""
    return {(p, t): model.generate(p, max_tokens=12, temperature=t, seed=7).tokens for p in PROMPTS for t in (0, 0.9)}


def test_threads_generating_at_once_each_get_their_own_result(model, alone):
    results, errors = {}, []
    start = threading.Barrier(6)

    def worker(prompt, temperature):
        try:
            start.wait()
            results[prompt, temperature] = model.generate(prompt, max_tokens=12, temperature=temperature,
                                                          seed=7).tokens
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=key) for key in alone]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == alone


def test_a_second_stepper_makes_the_first_refuse(model, alone):
    first = model.start(PROMPTS[0], max_tokens=12)
    for _ in range(3):
        first.step()
    second = model.start(PROMPTS[1], max_tokens=12)
    with pytest.raises(StaleStepperError, match="superseded"):
        first.step()
    while second.step() is not None:
        pass
    assert second.tokens == alone[PROMPTS[1], 0]
    with pytest.raises(StaleStepperError):  # still refused: the cache is the second's
        first.step()


@pytest.mark.parametrize("call", ["generate", "forward", "reset", "score"])
def test_any_call_that_reuses_the_cache_supersedes_a_stepper(model, call):
    s = model.start(PROMPTS[0], max_tokens=12)
    s.step()
    {"generate": lambda: model.generate(PROMPTS[1], max_tokens=2),
     "forward": lambda: model.forward([1, 2, 3]),
     "reset": model.reset,
     "score": lambda: model.score([1, 2, 3])}[call]()
    with pytest.raises(StaleStepperError):
        s.step()


def test_a_stepper_runs_on_another_thread_with_the_models_thread_count(model, alone):
    seen = []
    s = model.start(PROMPTS[2], max_tokens=12)
    net = s.model

    class Recording:  # the compiled model, noting numba's thread count at each forward
        def forward(self, *args):
            seen.append(numba.get_num_threads())
            return net.forward(*args)

    s.model = Recording()
    model.threads = 1
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # this thread's count must not leak over

    def drive():
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # a fresh thread's default
        while s.step() is not None:
            pass

    t = threading.Thread(target=drive)
    t.start()
    t.join()
    assert s.tokens == alone[PROMPTS[2], 0] and seen and set(seen) == {1}


def test_reentrant_use_from_on_token_is_refused_not_silently_wrong(model):
    def on_token(piece, token_id):
        model.generate(PROMPTS[1], max_tokens=1)  # same thread: the lock lets it in

    with pytest.raises(StaleStepperError):
        model.generate(PROMPTS[0], max_tokens=4, on_token=on_token)


@pytest.mark.parametrize("kwargs, param", [
    (dict(temperature=-1), "temperature"), (dict(top_p=1.5), "top_p"), (dict(top_k=-5), "top_k"),
    (dict(seed=-1), "seed"), (dict(max_tokens=-1), "max_tokens"), (dict(repetition_penalty=float("inf")),
                                                                    "repetition_penalty"),
    (dict(stop=[""]), "stop"), (dict(prompt="caf\udce9"), "prompt"),
])
def test_python_errors_name_the_keyword_argument(model, kwargs, param):
    kwargs = {"prompt": PROMPTS[0], **kwargs}
    with pytest.raises(ParameterError) as e:
        model.generate(**kwargs)
    assert e.value.param == param and str(e.value).startswith(param)


@pytest.mark.parametrize("ids", [[1, -5], [1, 10**9], [1], [[1, 2]], ["a", "b"]])
def test_score_refuses_bad_token_ids(model, ids):
    with pytest.raises(ParameterError, match="text"):
        model.score(ids)


def test_bad_arguments_fail_without_waiting_for_a_busy_model(model):
    held, release = threading.Event(), threading.Event()

    def busy():  # another thread in the middle of a call
        with model._session.lock:
            held.set()
            release.wait(120)

    other = threading.Thread(target=busy)
    other.start()
    errors = []
    caller = threading.Thread(target=lambda: errors.append(_error_of(lambda: model.generate("x", top_p=2))))
    try:
        assert held.wait(60)
        caller.start()
        caller.join(60)  # a guard against a hang, far beyond any wait this test could mean
        assert not caller.is_alive() and isinstance(errors[0], ParameterError)
    finally:
        release.set()
        other.join()
        caller.join()


def _error_of(call):
    try:
        call()
    except Exception as e:  # noqa: BLE001
        return e
    return None


def test_chat_on_gemma_uses_the_built_in_template():
    # found by scripts/soak.py: the Gemma GGUF ships no chat template, and chat=True failed
    # with advice (template='gemma') that generate does not take
    from tests._models import gemma3_path

    gemma = workbench.load(gemma3_path(), threads=1, n_ctx=64)
    ids = gemma.encode_prompt("Hello", chat=True)
    assert ids == gemma.tokenizer.encode_chat([{"role": "user", "content": "Hello"}], template="gemma")
    assert gemma.generate("Hello", chat=True, max_tokens=2).tokens
