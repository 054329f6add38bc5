"""`rlvr data check`: what is wrong with an SFT dataset before training on it.

rows.py parses and checks structure; duplicates.py, contamination.py and lengths.py are the row checks;
problems.py lists every problem kind with its severity; report.py renders and serialises; check.py runs
them in order and writes the cleaned copy. A new check: add its kind(s) to problems.KINDS, write a function
that takes the rows and a Findings, and call it from check.run_check."""
