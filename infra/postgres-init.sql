-- Runs once, on an empty data volume: MLflow's tracking store is POSTGRES_DB (mlflow).
CREATE DATABASE mlflow_auth;
CREATE DATABASE optuna;
