from types import SimpleNamespace

import pytest
import torch

from anomaly_synth_aug.evaluation.downstream.score_fractions import ScoreFractionScores, chosen_on_validation


def _batch(spot_pixels: int, label: int, value: float = 1.0) -> SimpleNamespace:
    """A 1 x 10 x 100 map (1000 pixels) of zeros with ``spot_pixels`` pixels at ``value``."""
    anomaly_map = torch.zeros(1, 10, 100)
    anomaly_map.view(-1)[:spot_pixels] = value
    return SimpleNamespace(anomaly_map=anomaly_map, gt_label=torch.tensor([label]))


def test_a_small_defect_is_ranked_by_small_fractions_and_lost_in_large_ones() -> None:
    """A 1-pixel defect at full strength against normals with a 10-pixel faint patch."""
    callback = ScoreFractionScores(fractions=(0.0, 0.01))
    trainer = SimpleNamespace(sanity_checking=False, global_step=100)
    callback.on_validation_epoch_start(trainer, None)
    for batch in (_batch(1, 1), _batch(1, 1), _batch(10, 0, 0.5), _batch(10, 0, 0.5)):
        callback.on_validation_batch_end(trainer, None, batch, None, 0)
    callback.on_validation_epoch_end(trainer, None)
    # max: 1.0 against 0.5; top 10 pixels: 0.1 against 0.5.
    assert callback.validation == [{"step": 100, "image_AUROC": {"0": 1.0, "0.01": 0.0}}]
    assert chosen_on_validation(callback.record(), 100, default=0.01) == 0.0
    assert chosen_on_validation(callback.record(), 200, default=0.01) is None  # no validation at that step


def test_sanity_checks_and_one_class_sets_are_not_recorded_and_test_is_kept_apart() -> None:
    callback = ScoreFractionScores(fractions=(0.0,))
    trainer = SimpleNamespace(sanity_checking=True, global_step=0)
    callback.on_validation_epoch_start(trainer, None)
    callback.on_validation_batch_end(trainer, None, _batch(1, 1), None, 0)
    callback.on_validation_batch_end(trainer, None, _batch(0, 0), None, 0)
    callback.on_validation_epoch_end(trainer, None)
    trainer.sanity_checking = False
    callback.on_validation_epoch_start(trainer, None)
    callback.on_validation_batch_end(trainer, None, _batch(0, 0), None, 0)  # normals only: no AUROC
    callback.on_validation_epoch_end(trainer, None)
    assert callback.validation == []
    callback.on_test_epoch_start(trainer, None)
    for batch in (_batch(3, 1), _batch(0, 0)):
        callback.on_test_batch_end(trainer, None, batch, None, 0)
    callback.on_test_epoch_end(trainer, None)
    assert callback.record() == {"fractions": [0.0], "validation": [], "test": {"0": pytest.approx(1.0)}}


def test_a_tie_keeps_the_default_fraction() -> None:
    record = {"validation": [{"step": 5, "image_AUROC": {"0": 0.9, "0.001": 0.9, "0.01": 0.8}}]}
    assert chosen_on_validation(record, 5, default=0.001) == 0.001
    assert chosen_on_validation(record, 5, default=0.01) == 0.0


def test_the_table_pairs_the_validation_choice_with_the_default_per_run() -> None:
    from anomaly_synth_aug.evaluation.downstream.score_fractions import score_fraction_markdown

    def run(seed: int, val: dict[str, float], test: dict[str, float], best_step: int = 600) -> dict:
        record = {"fractions": [0.0, 0.001], "validation": [{"step": 600, "image_AUROC": val}], "test": test}
        return {
            "detector": "segmenter",
            "generator": "shots_only",
            "seed": seed,
            "best_step": best_step,
            "image_AUROC_by_score_fraction": record,
        }

    runs = [
        run(0, {"0": 0.95, "0.001": 0.90}, {"0": 0.80, "0.001": 0.70}),  # validation prefers the max
        run(1, {"0": 0.90, "0.001": 0.90}, {"0": 0.60, "0.001": 0.72}),  # a tie keeps the default
        run(2, {"0": 0.95, "0.001": 0.90}, {"0": 0.99, "0.001": 0.50}, best_step=None),  # no validation: left out
        {"detector": "segmenter", "generator": "perlin", "seed": 0},  # recorded before the fractions
    ]
    table = score_fraction_markdown(runs)
    assert "| segmenter | shots_only | 2 | 0.710 ± 0.014 | 0, 0.001 | 0.760 ± 0.057 | +0.050 ± 0.071 |" in table
    assert "perlin" not in table and score_fraction_markdown(runs[2:]) == ""


def test_maps_smaller_than_their_masks_are_scored_at_the_masks_size() -> None:
    """Callbacks run before the model's pre-processor restores the native size: PaDiM's and PatchCore's maps came
    in at the model's 32 px, so each fraction covered other pixels than in the map the evaluator scored."""
    from anomaly_synth_aug.models.normal_prior import top_fraction_mean

    small = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)) ** 4
    batch = SimpleNamespace(anomaly_map=small, gt_label=torch.tensor([1]), gt_mask=torch.zeros(1, 24, 40))
    callback = ScoreFractionScores(fractions=(0.01,))
    callback.on_test_epoch_start(None, None)
    callback.on_test_batch_end(None, None, batch, None, 0)
    native = torch.nn.functional.interpolate(small, size=(24, 40), mode="bilinear", align_corners=False)
    expected = top_fraction_mean(native.reshape(1, -1), 0.01)
    assert torch.allclose(callback._scores[0][:, 0], expected)
    assert not torch.allclose(expected, top_fraction_mean(small.reshape(1, -1), 0.01))  # the size matters
