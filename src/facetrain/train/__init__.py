"""Training: configuration, learning-rate schedules, checkpoints and the loop."""
