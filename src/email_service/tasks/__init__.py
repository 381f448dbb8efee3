"""Job shells: the in-process runner (embedded default) and, later, Celery tasks."""
