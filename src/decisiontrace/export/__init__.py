"""Runs as OTLP JSON, both ways: export of stored runs and rebuild from exported traces."""
