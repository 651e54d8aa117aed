"""Embedded implementations of the storage roles on SQLite (the defaults: nothing to start)."""
