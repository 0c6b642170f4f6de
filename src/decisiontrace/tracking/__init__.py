"""Agent calls into spans: the tracker, its live runs, run scopes and propagation."""
