"""Celery tasks: thin shells that load state, call `models`, persist, and publish."""
