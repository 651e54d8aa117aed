"""Measurement scripts of the offline tier (run as modules; nothing runs on import)."""
