"""How this server is deployed: environment profiles (`manage.py env`), the production safety
checks, readiness (/readyz) and the log format (request ids, JSON)."""
