"""Pure chemistry: oxidation states, charge balance, structure files and checks. Imports neither the store nor
the descriptors, so every layer (sources, features, dft, workflows, models) can build on it."""
