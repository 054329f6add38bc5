"""Sandboxes that run untrusted programs: a warm Docker container pool, or bubblewrap as the fallback."""
