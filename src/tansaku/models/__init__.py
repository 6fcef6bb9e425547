"""Regressors with uncertainty, evaluation (repeated CV, holdout, grouped), importance and persistence."""
