"""rlvr trainer."""
