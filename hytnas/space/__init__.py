"""Search spaces as data: ``get_space(name_or_yaml_path)`` and the :class:`Space` methods."""
from hytnas.space.space import (
    CHANNEL_GENES,
    GENES,
    LATENT_GENES,
    MULTIPLIERS,
    Arch,
    Space,
    SpaceDef,
    builtin_spaces,
    get_space,
)

__all__ = ["Arch", "Space", "SpaceDef", "GENES", "CHANNEL_GENES", "LATENT_GENES", "MULTIPLIERS",
           "builtin_spaces", "get_space"]
