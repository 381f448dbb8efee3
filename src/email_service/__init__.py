"""email_service: multi-tenant email backend (see DESIGN.md)."""

__version__ = "1.0.0"
