"""The page in front of leukml's served pyfunc (CellClassifier) on a small untrained VGG16: in the
test's process (``small_source``), or as a server process of its own, for what only a process of
its own shows, its memory (``python -c PAGE TESTS MODEL PORT LIMITS``: `leukml app`'s
``create_app`` and ``serve`` on 127.0.0.1:PORT, ``Limits(**json.loads(LIMITS))``)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pandas as pd

PAGE = textwrap.dedent("""
    import json
    import sys

    sys.path.insert(0, sys.argv[1])
    from pages import evaluation, small_source

    from leukml.serving.app.config import Limits
    from leukml.serving.app.server import create_app, serve

    app = create_app(small_source(sys.argv[2]), evaluation(), Limits(**json.loads(sys.argv[4])))
    serve(app, "127.0.0.1", int(sys.argv[3]))
""")


def evaluation():
    """What the page says of the model's evaluation (made when asked: it imports MLflow)."""
    from leukml.serving.app.evaluation import Evaluation

    return Evaluation("subject", "a subject-grouped split", (("weighted F1", 0.5),), "10", "selected on val")


def save_small_model(folder: Path) -> Path:
    """A small untrained VGG16 (32 px), saved as ``folder/model.keras``."""
    from leukml.model.archs import ModelConfig
    from leukml.model.networks import build_network

    network = build_network(ModelConfig(arch="vgg16", weights="none", image_size=32), seed=0)
    path = folder / "model.keras"
    network.model.save(path)
    return path


def small_source(path: str | Path):
    """leukml's served pyfunc on the model saved at ``path``, as the page's source (version 7)."""
    import keras
    from mlflow.pyfunc.model import PythonModelContext

    from leukml.model.networks import split_network
    from leukml.serving.app.source import Source, VersionInfo
    from leukml.serving.pyfunc import CellClassifier

    classifier = CellClassifier()
    classifier.load_context(PythonModelContext({"keras_model": str(path)}, {"model_version": "7"}))
    keras_model = keras.saving.load_model(path, compile=False)

    def answer(encoded: list[str]) -> pd.DataFrame:
        return classifier.predict(None, pd.DataFrame({"image": encoded}))

    info = VersionInfo("test-model", "7", "champion", "2026-12-04 12:00 UTC")
    return Source(info, answer, split_network(keras_model), 32)


def peak_growth(pid: int, action):
    """``action()``'s result and how far process ``pid``'s resident memory rose above where it was
    while it ran: the kernel's high-water mark (VmHWM), reset to the current size first (Linux)."""
    import psutil

    before = psutil.Process(pid).memory_info().rss
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: the high-water mark := the current size
    result = action()
    status = Path(f"/proc/{pid}/status").read_text()
    peak = int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)[1]) * 1024
    return result, peak - before
