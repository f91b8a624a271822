"""Multi-objective Bayesian optimisation over the discrete HyT-NAS space.

- :mod:`~search_algos.mobo.surrogates`: ``gp`` and ``rank_ensemble`` surrogates (BoTorch models);
- :mod:`~search_algos.mobo.acquisition`: qLogNEHVI / qLogEHVI / qLogNParEGO, reference points;
- :mod:`~search_algos.mobo.core`: known-objective model, candidates, discrete optimisation;
- :mod:`~search_algos.mobo.searcher`: :class:`MOBOSearcher`, the Ray Tune adapter.
"""
