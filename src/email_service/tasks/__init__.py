"""Job kinds declared once (:mod:`.registry`), run one attempt at a time (:mod:`.execution`) by the in-process
runner (:mod:`.runner`, embedded default) or Celery workers (:mod:`.celery_app`, production); periodic work and its
scheduler (:mod:`.periodic`) with a leader lease for ``email-service beat`` (:mod:`.lease`)."""
