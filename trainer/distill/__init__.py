"""`rlvr train distill`: a small student learns from a teacher (see rlvr/student.py for making a student).

Modules: config (the typed run config), losses (KL / generalized JSD with temperature and top-k truncation),
examples (prompt + completion token ids with the assistant-only mask), teacher_samples (the teacher generates on
the rollout service, the grader service keeps verified completions), loop (the training run: steps, held-out
loss, checkpoints). A new divergence goes into losses.DIVERGENCES; a new mode into config.DistillMode and
loop.run_distill."""
