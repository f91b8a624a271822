"""HyT-NAS: hardware-aware multi-objective NAS of tiny hybrid convolution + transformer models."""
from hytnas.errors import ConfigError, DataError, HardwareError, HytnasError, SearchError, SpaceError

__version__ = "0.1.0"
__all__ = ["HytnasError", "ConfigError", "SpaceError", "DataError", "SearchError", "HardwareError", "__version__"]
