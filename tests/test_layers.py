"""The package's layers: every import points down (or within its layer), read from the source itself.

From the bottom: shared helpers; data I/O and pretrained backbones; generators; the sample cache;
the datamodule and its datasets (the data path: datamodule -> generator -> cache -> batch); models,
callbacks and pictures; the benchmark harness; the demo; the CLI. The one import that runs up is
the CLI's to the package's public names (``cli/main.py: import_packaged_generators``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import anomaly_synth_aug
from anomaly_synth_aug.generators.names import PACKAGED_GENERATORS

PACKAGE = Path(anomaly_synth_aug.__file__).parent
LAYERS: list[set[str]] = [
    {"errors", "utils"},
    {"data.sample", "data.io", "data.transforms", "data.mvtec_folder", "data.fewshot", "data.__init__", "backbones"},
    {"generators"},
    {"cache"},
    {"data.dataset", "data.shots_dataset", "data.cached_dataset", "data.datamodule", "data.datamodule_options",
     "data.mvtec_datamodule", "data.samplers", "data.validation_split", "data.real_anomalies"},
    {"models", "callbacks", "visualization"},
    {"evaluation"},
    {"demo"},
    {"cli"},
    {"<package>"},  # anomaly_synth_aug/__init__.py: the public names, imported lazily
]
ALLOWED_UPWARD = {("cli", "<package>")}


def unit(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts or parts == ["__init__"]:
        return "<package>"
    if parts[0] == "data" and len(parts) > 1:
        return f"data.{parts[1]}"
    return parts[0]


def layer(name: str) -> int:
    return next(index for index, members in enumerate(LAYERS) if name in members)


def imports() -> set[tuple[str, str]]:
    edges = set()
    for path in PACKAGE.rglob("*.py"):
        source = unit(".".join(("anomaly_synth_aug", *path.relative_to(PACKAGE).with_suffix("").parts)))
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            edges |= {(source, unit(n)) for n in names if n.split(".")[0] == "anomaly_synth_aug" and unit(n) != source}
    return edges


def test_every_module_has_a_layer() -> None:
    assert {name for edge in imports() for name in edge} <= set().union(*LAYERS)


def test_imports_point_down_but_one() -> None:
    upward = {(a, b) for a, b in imports() if layer(a) < layer(b)}
    assert upward == ALLOWED_UPWARD


def test_the_packaged_generators_are_the_public_ones() -> None:
    public = {n for n in anomaly_synth_aug.__all__ if n.endswith("Generator")} - {"AnomalyGenerator", "ClassicGenerator"}
    assert set(PACKAGED_GENERATORS) == public
    for name, module in PACKAGED_GENERATORS.items():
        assert anomaly_synth_aug._EXPORTS[name] == module
