"""The job service: HTTP API, results store and artifact storage (never imports torch)."""
