"""Matplotlib figures: parity, importance, learning and discovery curves."""
