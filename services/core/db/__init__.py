"""The database schema, engine factory and dialect-neutral write helpers, shared by all services."""
