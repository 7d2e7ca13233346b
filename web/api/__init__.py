"""REST API under ``/api/v1`` (and the downstream PRD's ``/api/entities`` routes)."""
