"""Run reports: `rlvr report RUN_DIR` renders `report.html` (self-contained, PNGs inlined) and the PNGs beside it
from a run dir's metrics.jsonl files, and `report.browser` checks the page in headless Chromium.

A new plot is one `Panel` in report/plots.py (which metric keys it draws); a new table is a field of the context
built in report/render.py and a block in report/templates/report.html.j2."""
