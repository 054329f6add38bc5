"""Sandboxes that run untrusted programs: a warm Docker container pool, or bubblewrap as the fallback.

Generic: a backend runs one program (argv, stdin, limits) and, optionally, a trusted Judge next to it as another
uid that talks to the program instead of the host (base.py). A grader that needs a sandbox lives in its own
folder with its judge and program side (see graders/python_tests/); a new backend implements base.Sandbox."""
