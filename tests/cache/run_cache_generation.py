"""Fill a sample cache in a fresh process: the DDP test and the kill-and-resume test run this script.

Lightning's "ddp" strategy re-runs this script once per extra rank, exactly as it would a user's
training script, which is why it is a script and not a function called inside pytest.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from cache_helpers import TwoTypeGenerator

from anomaly_synth_aug.cache import generate_cache


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("source_dir", type=Path)
    parser.add_argument("--samples-per-type", type=int, default=6)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(process)d %(name)s: %(message)s")
    generator = TwoTypeGenerator()
    generator.delay = args.delay
    entries = generate_cache(
        args.cache_dir,
        generator,
        sorted(args.source_dir.glob("*.png")),
        samples_per_type=args.samples_per_type,
        batch_size=2,
        trainer_kwargs={
            "accelerator": "cpu",
            "devices": args.devices,
            "strategy": args.strategy,
            "enable_progress_bar": False,
        },
    )
    print(f"DONE {len(entries)} samples", flush=True)


if __name__ == "__main__":
    main()
