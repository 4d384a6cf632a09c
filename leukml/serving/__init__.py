"""The registered model and its use: which run a promotion registers and the aliases (``choice``,
no backend), promotion to the registry (``registry``), the image-taking pyfunc a server runs
(``pyfunc``), prediction from files (``predict``), and the web page in front of a registered
version (``app``, `leukml app`).

May import every layer below (tracking included). MLflow yes; no Optuna.
"""
