"""The OLAP database's `analytics` schema: table definitions and their creation and upgrade."""
