"""Active learning: acquisition functions, batch selection, pool-based simulation, suggestions."""
