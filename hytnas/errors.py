"""The package's exception hierarchy.

Every error a user can cause (bad YAML, bad CLI value, bad vector, bad data folder) is raised
as one of these, with a one-line message that names the offending field and how to fix it
(:class:`TrainingError` is a trial's own failure, raised inside a Ray worker).
The CLI turns them into ``hytnas: error: <message>`` and exit code 2.
"""
from __future__ import annotations


class HytnasError(Exception):
    """Base class of all errors raised on purpose by hytnas."""


class ConfigError(HytnasError, ValueError):
    """An invalid experiment, space or device configuration (names the field)."""


class SpaceError(ConfigError):
    """An arch, gene vector or space definition outside the search space (names the gene)."""


class DataError(HytnasError):
    """A dataset or data file that is missing or malformed (names the path, row or column)."""


class SearchError(HytnasError):
    """Invalid searcher settings or state (unknown objective, empty feasible set, bad state)."""


class HardwareError(HytnasError):
    """A device profile or latency table that cannot be used."""


class TrainingError(HytnasError, RuntimeError):
    """A candidate's training cannot go on (e.g. a non-finite loss); fails that trial only."""
