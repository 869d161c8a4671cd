"""The worker side of adaprune: the Celery app, the prune task, metrics and the CLI."""
