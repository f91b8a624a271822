"""Models: the config language (:class:`ArchCfg`, :class:`BlockCfg`), the block registry
(:data:`BLOCKS`), :func:`build_model` and the reference zoo (``hytnas.models.zoo``)."""
from hytnas.models.blocks import BLOCKS
from hytnas.models.config import ArchCfg, BlockCfg
from hytnas.models.model import build_model

__all__ = ["ArchCfg", "BlockCfg", "BLOCKS", "build_model"]
