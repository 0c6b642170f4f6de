"""Drop-in replacements for other frameworks' decision trackers."""
