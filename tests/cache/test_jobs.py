from collections import Counter
from pathlib import Path

import pytest
from cache_helpers import train_normals

from anomaly_synth_aug.cache.jobs import plan_jobs
from anomaly_synth_aug.errors import InvalidInputError


@pytest.fixture
def sources(tiny_mvtec: Path) -> list[Path]:
    return train_normals(tiny_mvtec)


def test_plan_is_deterministic_and_ids_unique(sources: list[Path]) -> None:
    jobs = plan_jobs(sources, ["spot", "dent"], 5, seed=3)
    assert jobs == plan_jobs(list(reversed(sources)), ["dent", "spot"], 5, seed=3)
    assert len({job.id for job in jobs}) == len(jobs) == 10
    assert [job.id for job in jobs[:2]] == ["dent/000000", "dent/000001"]
    assert len({job.seed for job in jobs}) == 10
    assert plan_jobs(sources, ["dent"], 5, seed=4) != jobs[:5]


def test_plan_is_prefix_stable(sources: list[Path]) -> None:
    """More samples per type extend the plan; the first jobs keep their source and seed."""
    short, long = plan_jobs(sources, ["dent"], 3, seed=0), plan_jobs(sources, ["dent"], 8, seed=0)
    assert long[:3] == short


def test_every_source_used_before_any_repeats(sources: list[Path]) -> None:
    jobs = plan_jobs(sources, ["dent"], len(sources) + 2, seed=0)
    first_round = [job.source for job in jobs[: len(sources)]]
    assert sorted(first_round) == sorted(str(p.resolve()) for p in sources)
    assert max(Counter(job.source for job in jobs).values()) == 2


@pytest.mark.parametrize(
    ("sources_given", "types", "count", "message"),
    [(True, ["dent"], 0, "samples_per_type"), (False, ["dent"], 2, "no source"), (True, [], 2, "no defect types")],
)
def test_bad_arguments_are_named(
    sources: list[Path], sources_given: bool, types: list[str], count: int, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        plan_jobs(sources if sources_given else [], types, count, seed=0)
