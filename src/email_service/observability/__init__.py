"""Metrics (Prometheus) and logs (structlog) shared by every layer: the bottom of the stack, next to config.

Nothing here imports the database, Flask or Celery; the API, the sync engine and the job shells record into the
metrics of :mod:`.metrics`, and every process entry point calls :func:`.logs.configure_logging` once.
"""
