"""The soak script's short version (scripts/soak.py --short), and that its checks can fail."""

import importlib.util
import random
import subprocess
import sys
from pathlib import Path

from tests._models import smollm2_path
from workbench.errors import ParameterError

ROOT = Path(__file__).resolve().parents[1]


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak", ROOT / "scripts" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_short_soak_passes():
    smollm2_path()  # skip without the model package
    r = subprocess.run([sys.executable, "scripts/soak.py", "--short"], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in r.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| phase")}
    assert set(rows) == {"generations", "invalid"}
    runs, failures = int(rows["generations"][0]), int(rows["generations"][1])
    assert runs == 8 and failures == 0
    assert int(rows["invalid"][0]) == 60 and int(rows["invalid"][1]) == 0


def test_the_invalid_phase_reports_what_is_accepted_or_misnamed(tmp_path, monkeypatch):
    soak = _soak_module()

    class Lenient:  # accepts everything: each set must be a failure
        def generate(self, **kwargs):
            return None

    state = soak.Soak(random.Random(1), tmp_path, 0, 40, 0, ("m",))
    monkeypatch.setattr(state, "model", lambda name, kv: Lenient())
    monkeypatch.setattr(soak.workbench, "load", lambda *a, **k: None)
    row = soak.phase_invalid(state)
    assert row.runs == 40 and len(row.failures) == 40 and all("accepted" in f for f in row.failures)

    class Misnaming:  # refuses, but names a parameter that was fine
        def generate(self, **kwargs):
            raise ParameterError("unrelated must be something", param="unrelated")

    monkeypatch.setattr(state, "model", lambda name, kv: Misnaming())
    monkeypatch.setattr(soak.workbench, "load", lambda *a, **k: Misnaming().generate())
    row = soak.phase_invalid(state)
    assert len(row.failures) == 40 and all("names 'unrelated'" in f for f in row.failures)
