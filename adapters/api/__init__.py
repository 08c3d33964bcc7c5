"""The service's own JSON API under ``/api``: the review queue."""
