"""The span model: runs and decisions as span attributes and events, both ways."""
