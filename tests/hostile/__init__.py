"""The hostile-input corpus: files built by scripts (never committed as binaries) that try to run
code, read outside their folder, cost more than their size, or convert silently wrong.

Each ``cases_*.py`` module defines ``CASES``, a list of `Case`. ``tests/test_hostile.py`` runs every
case through the real ``remap`` command in a subprocess and asserts its exit code, its one-line
message, that no marker file appeared, that nothing was left on disk, and wall time and peak RSS
under generous bounds. ``benchmarks/bench_hostile.py`` runs the same cases and prints the measured
table.
"""
