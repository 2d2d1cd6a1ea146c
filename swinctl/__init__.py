"""swinctl."""
