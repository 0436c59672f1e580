"""The SQL store: SQLAlchemy models, sessions, migrations and the named queries of the service."""
