"""The trial protocol: what a trial reports and when it is complete."""
from __future__ import annotations

from typing import Any, Mapping


def is_complete(result: Mapping[str, Any] | None, max_epochs: int | None = None) -> bool:
    """Whether ``result`` is the final, full-fidelity report of a trial: its ``epoch`` reached
    ``max_epochs`` (when known), else its ``done`` flag."""
    result = result or {}
    if max_epochs is not None:
        epoch = result.get("epoch")
        return isinstance(epoch, (int, float)) and epoch >= max_epochs
    return bool(result.get("done"))
