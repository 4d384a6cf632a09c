"""The networks: the architecture registry and the model options (``archs``), building a frozen
base with the paper's head (``networks``), Grad-CAM (``gradcam``).

May import ``common``, ``reference`` and ``data``. Keras only (any backend); no MLflow, no Optuna.
"""
