"""`rlvr pipeline run`: an ordered chain of stages (SFT → GRPO → distill → export → eval) in one run dir, with a
manifest that lets a re-run skip finished stages and `--resume` continue an interrupted one.

pipeline/config.py is the typed pipeline file, pipeline/manifest.py the record of what ran and the skip/resume
plan, pipeline/stages.py the stage kinds (a new kind is one `StageKind` entry there), pipeline/runner.py the loop."""
