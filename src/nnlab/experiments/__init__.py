"""Experiments over many runs: sweeps (a grid x seeds, ``results.csv``), where they
run (``backends.py``), and ``nnlab reproduce``. They call the engine; the engine never
imports them."""
