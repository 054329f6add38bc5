"""rlvr graders."""
