"""`vae finetune`: the two-phase loop and what it needs (data, run directory, checkpoints, resume, calibration, validation)."""
