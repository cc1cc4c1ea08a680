"""anomaly_synth_aug."""
