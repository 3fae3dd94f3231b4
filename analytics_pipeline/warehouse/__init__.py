"""The OLAP database's `analytics` schema: its creation and upgrade, and the erasure records.

The tables themselves are declared with rollups/schema.py (rollup tables) and erasures.py; this
package builds on the rollup registry and nothing in rollups/ imports it, so the two packages
form no cycle.
"""
