"""email_service: multi-tenant email backend (see DESIGN.md)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("email-service")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
