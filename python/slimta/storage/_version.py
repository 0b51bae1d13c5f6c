"""The version of this distribution and of the spec it implements."""

__all__ = ["SPEC_VERSION", "__version__"]

__version__ = "0.1.0"
SPEC_VERSION = "1.2.0"
