"""Data governance: tenant erasure, retention, pseudonyms.

See docs/OPERATIONS.md, "Tenant lifecycle".
"""
