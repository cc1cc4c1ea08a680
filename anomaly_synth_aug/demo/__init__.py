"""The offline demo: an embedded texture dataset and the end-to-end few-shot pipeline."""
