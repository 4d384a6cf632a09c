"""`leukml app`: a web page in front of a registered model, for the people who look at cells.

Owns the page's parts, one concern a module: where answers come from (``source``: the registered
version in-process or a running ``mlflow models serve``, and its Keras model for Grad-CAM), the
model's evaluation as a person reads it (``evaluation``: the version's tags and its source run),
answering a chunk of uploads (``inference``: one batched model call per chunk, Grad-CAM and the
look-alike check per image, a bad file named and set aside), a zip's images with their inflation
counted (``archive``), binding, the names and origins it answers and its headers (``security``),
the checks every request passes before a route sees it (``guard``), and the FastAPI routes with
their Jinja2 template and static files (``server``). Uploads stay in memory; nothing is written
to disk.

Part of the serving layer: may import every layer below (tracking included) and MLflow; no Optuna.
"""
