"""Retention, the base every domain calls: the policy (kinds, periods, read-time hiding), legal holds, the
hash-chained audit log, tombstones (deletion receipts and deleting an item now), and database leases.

It imports no domain: the tables of each kind are registered by their domains (`petportrait.registry`).
"""
