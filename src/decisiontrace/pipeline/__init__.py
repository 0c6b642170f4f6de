"""Spans into run records: the run-record processor, its writer thread and run assembly."""
