"""rlvr rollout."""
