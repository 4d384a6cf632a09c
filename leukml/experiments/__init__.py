"""Plans of many trainings: searches (the paper's grid and wider TPE searches, any number of workers
on one study), cross-validation and the compared protocols, a study's figures and summary (``figures``, as
``leukml.analysis.study.StudySummary``).

May import every layer below (``common`` up to ``analysis``). The only layer that imports Optuna;
no MLflow: each trial's training goes through a callable that the search workflow supplies
(``leukml.workflows.search``).
"""
