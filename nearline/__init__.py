"""nearline."""
