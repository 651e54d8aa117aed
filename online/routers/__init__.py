"""One router per resource of the online API."""
