"""PostgreSQL access of the calendar service: tables, engine, unit of work, migrations."""
