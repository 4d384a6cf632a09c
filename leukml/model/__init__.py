"""The networks: the architecture registry and the model options (``archs``), building a frozen
base with the paper's head (``networks``), Grad-CAM (``gradcam``).

May import ``common``, ``reference`` and ``data``. Keras (any backend); no MLflow, no Optuna. A
backend's own module (TensorFlow, JAX, torch) only in ``gradcam``, for the head's gradient (Keras 3
has no backend-neutral one), each imported only on its backend.
"""
