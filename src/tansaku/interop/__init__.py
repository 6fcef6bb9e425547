"""Exchanging materials with other databases: OPTIMADE filters, entries and a client."""
