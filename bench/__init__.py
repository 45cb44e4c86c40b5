"""fsnode benchmarks: each subject measured against a reference in the same run.

``python -m bench [--quick] [--only NAME...]`` runs them, prints a table and writes
``bench/results/latest.json``. Each family module (``hits``, ``misses``, ``plan``,
``placement_sim``, ``memory``) also runs on its own: ``python -m bench.hits``.
"""
