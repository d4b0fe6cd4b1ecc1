"""The REST API under /api/v1/ (docs/API.md): thin DRF views over audit.selectors (team-scoped
reads) and audit.services (writes), a streamed CSV/JSON export, and the OpenAPI schema."""
