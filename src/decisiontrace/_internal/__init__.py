"""Helpers every component uses: the error policy."""
