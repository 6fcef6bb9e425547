"""Descriptors as scikit-learn transformers: composition statistics and structure geometry, vectorized."""
