"""The registered model and its use: promotion to the registry with aliases (``registry``), the
image-taking pyfunc a server runs (``pyfunc``), and prediction from files (``predict``).

May import every layer below (tracking included). MLflow yes; no Optuna.
"""
