"""Engine-neutral DFT settings and physics; engine-specific input, run and parse code lives in dft/qe."""
