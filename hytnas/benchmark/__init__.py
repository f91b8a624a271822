"""Tabular benchmarks: the arch table (``table``), its surrogate (``surrogate``), building a table
through Ray Tune (``build``) and running searchers x seeds on it (``run``)."""
