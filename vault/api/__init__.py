"""The vendor-facing JSON API under /api/v1 (bearer tokens, problem+json errors)."""
