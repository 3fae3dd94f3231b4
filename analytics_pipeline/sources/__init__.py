"""The product's OLTP database: its tables as SQLAlchemy Core metadata and as Dagster sources."""
