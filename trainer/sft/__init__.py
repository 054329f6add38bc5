"""Supervised fine-tuning warm-up stage: `rlvr train sft` on TRL's SFTTrainer.

encode.py turns checked rows (trainer.datacheck) into token ids + assistant masks; config.py is the typed
TOML config; run.py builds and drives the SFTTrainer; callbacks.py ties it to the project's run log,
checkpoints and held-out evaluation; export.py writes the final model directory. A new option goes into
config.py and is translated into TRL's SFTConfig in run.py."""
