"""One loader for MVTec-layout category folders: scanned and validated up front, then anomalib's ``Folder``.

The layout is ``train/good/``, ``test/good/``, ``test/<defect_type>/`` and
``ground_truth/<defect_type>/<stem>_mask.<ext>``. ``scan_mvtec_folder`` finds every file with one
extension list and checks, before anything is fitted or trained, what would otherwise fail minutes
later or, worse, silently:

* every defect image has its mask (anomalib's ``Folder`` otherwise fails inside pandas with
  "cannot assign 5 input values to the 6 output values" and names no file);
* masks sort in the same order as their images (``Folder`` pairs them by sorted order, so
  ``a.png`` with ``a1_mask.png`` would silently swap masks);
* every image and mask decodes, and each mask has its image's size.

``mvtec_folder`` then builds the ``Folder`` datamodule, and ``mvtec_datamodule`` wraps it in
``SyntheticAnomalyDataModule``: the CLI, the demo, the benchmark and the few-shot split all read
MVTec-layout folders through this module.

Example:
    >>> layout = scan_mvtec_folder("../shared/data/magnetic_tile")
    >>> layout.defect_types
    ['blowhole', 'break', 'crack', 'fray', 'uneven']
    >>> folder = mvtec_folder(layout, train_batch_size=8)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from anomalib.data import Folder
from torchvision.transforms.v2 import Transform
from tqdm.auto import tqdm

from anomaly_synth_aug.data.io import IMAGE_EXTENSIONS, image_size
from anomaly_synth_aug.data.sample import NORMAL_TYPE
from anomaly_synth_aug.errors import InvalidInputError, MaskError
from anomaly_synth_aug.utils.fingerprint import tree_fingerprint

logger = logging.getLogger(__name__)

#: ``ground_truth/<type>/<stem><MASK_SUFFIX>.<ext>`` (MVTec AD's convention); ``<stem>.<ext>`` also works.
MASK_SUFFIX = "_mask"
_LAYOUT_FIX = (
    "use an MVTec-layout folder: train/good/, test/good/, test/<defect>/, ground_truth/<defect>/<stem>_mask.png"
)


@dataclass(frozen=True)
class MvtecLayout:
    """The files of one MVTec-layout category, as found by ``scan_mvtec_folder``.

    ``defects`` maps each defect type to its (image, mask) pairs, sorted by image name; a mask is
    None only when the scan was told not to require masks.
    """

    root: Path
    train_normals: list[Path]
    test_normals: list[Path]
    defects: dict[str, list[tuple[Path, Path | None]]]

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def defect_types(self) -> list[str]:
        return sorted(self.defects)

    def count(self) -> int:
        """All image files of the category."""
        return len(self.train_normals) + len(self.test_normals) + sum(len(v) for v in self.defects.values())

    def files(self) -> list[Path]:
        """Every image and mask of the category: the normals, then each defect type's images and masks."""
        files = [*self.train_normals, *self.test_normals]
        return files + [path for pairs in self.defects.values() for pair in pairs for path in pair if path is not None]

    def digest(self) -> str:
        """A hash of the category's files (paths below ``root`` and contents), not of where it lies: results
        recorded on one version of a dataset must not be resumed on another."""
        return tree_fingerprint(self.root, self.files())


def images_in(folder: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files directly in ``folder`` (by extension, case-insensitive), sorted by name."""
    wanted = {extension.lower() for extension in extensions}
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in wanted)


def _mask_of(image: Path, masks: dict[str, Path]) -> Path | None:
    return masks.get(image.stem + MASK_SUFFIX) or masks.get(image.stem)


def scan_mvtec_folder(
    root: str | Path,
    *,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    require_masks: bool = True,
    decode: bool = True,
) -> MvtecLayout:
    """Find and validate the files of an MVTec-layout category.

    Args:
        root: the category folder.
        extensions: image file extensions, for images and masks alike.
        require_masks: a defect image without a mask, or a mask without an image, is an error naming it
            (False: an image without a mask is recorded as None).
        decode: open every image and mask (a corrupt or truncated file is an error naming it) and
            check that each mask has its image's size.
    """
    root = Path(root)
    train_dir, test_dir = root / "train" / NORMAL_TYPE, root / "test"
    if not root.is_dir():
        problem = "this is a file, not a data folder" if root.is_file() else "data folder not found"
        raise InvalidInputError(problem, path=root, fix=_LAYOUT_FIX)
    if not train_dir.is_dir() or not test_dir.is_dir():
        raise InvalidInputError(
            "not an MVTec-layout category folder (needs train/good/ and test/)", path=root, fix=_LAYOUT_FIX
        )
    train_normals = images_in(train_dir, extensions)
    if not train_normals:
        raise InvalidInputError(
            f"no images with extensions {sorted(extensions)} in train/good/", path=train_dir, fix=_LAYOUT_FIX
        )
    test_normals = images_in(test_dir / NORMAL_TYPE, extensions) if (test_dir / NORMAL_TYPE).is_dir() else []
    defects: dict[str, list[tuple[Path, Path | None]]] = {}
    for type_dir in sorted(p for p in test_dir.iterdir() if p.is_dir() and p.name != NORMAL_TYPE):
        gt_dir = root / "ground_truth" / type_dir.name
        masks = {m.stem: m for m in images_in(gt_dir, extensions)} if gt_dir.is_dir() else {}
        pairs = [(image, _mask_of(image, masks)) for image in images_in(type_dir, extensions)]
        if require_masks:
            for image, mask in pairs:
                if mask is None:
                    raise MaskError(
                        "this defect image has no mask",
                        path=image,
                        fix=f"add {gt_dir / (image.stem + MASK_SUFFIX + '.png')}, or move the image out of test/",
                    )
            _check_no_orphan_mask(masks.values(), pairs, type_dir)
            _check_sorted_pairing(pairs)
        if pairs:
            defects[type_dir.name] = pairs
    if not defects:
        raise InvalidInputError("no defect images under test/<defect_type>/", path=test_dir, fix=_LAYOUT_FIX)
    layout = MvtecLayout(root=root, train_normals=train_normals, test_normals=test_normals, defects=defects)
    if decode:
        _check_files(layout)
    return layout


def _check_no_orphan_mask(masks: Iterable[Path], pairs: list[tuple[Path, Path | None]], image_dir: Path) -> None:
    """A mask with no image shifts anomalib's sorted pairing of every later image, or breaks its count."""
    paired = {mask for _, mask in pairs}
    orphans = sorted(mask for mask in masks if mask not in paired)
    if orphans:
        raise MaskError(
            f"this mask has no defect image in {image_dir}",
            path=orphans[0],
            fix=f"remove the mask, or add its image to {image_dir}",
        )


def _check_sorted_pairing(pairs: list[tuple[Path, Path | None]]) -> None:
    """anomalib's ``Folder`` pairs the sorted images with the sorted masks: the two orders must agree."""
    masks_in_order = sorted(mask for _, mask in pairs if mask is not None)
    for (image, mask), by_sorting in zip(pairs, masks_in_order, strict=True):
        if mask != by_sorting:
            raise MaskError(
                f"anomalib's Folder pairs masks with images by sorted file name and would give this image "
                f"{by_sorting.name} instead of {mask.name}",
                path=image,
                fix="name every mask <image stem>_mask.png, with image stems that sort the same way as the masks",
            )


def _check_files(layout: MvtecLayout) -> None:
    """Decode every file once (a corrupt one is named) and compare each mask's size with its image's."""
    checks: list[tuple[Path, Path | None]] = [(path, None) for path in (*layout.train_normals, *layout.test_normals)]
    checks += [pair for pairs in layout.defects.values() for pair in pairs]
    for image, mask in tqdm(
        checks, desc=f"checking {layout.name}", unit="image", disable=len(checks) < 200, leave=False
    ):
        size = image_size(image)
        if mask is not None and image_size(mask) != size:
            raise MaskError(
                f"mask size {image_size(mask)} (H, W) differs from its image's {size}",
                path=mask,
                fix="save the mask at the image's resolution",
            )


def _as_dirs(root: Path | None, value: object) -> list[Path]:
    if value is None:
        return []
    values = [value] if isinstance(value, str | Path) else list(value)  # type: ignore[call-overload]
    return [Path(v) if root is None or Path(v).is_absolute() else root / v for v in values]


def check_folder_root(datamodule: object) -> None:
    """Refuse an anomalib ``Folder`` whose root is not a folder, when it is built, not minutes into a run.

    Only a ``Folder``: it has no data of its own, whereas ``MVTecAD`` and the like may download into a
    missing root in ``prepare_data``. Checked at construction so that under ``anomalib fit --config`` the
    first error is this one line, not a traceback from inside ``Trainer.fit``.

    Example:
        >>> check_folder_root(Folder(name="x", root="no/such/folder", normal_dir="good"))
        Traceback (most recent call last):
        ...
        anomaly_synth_aug.errors.InvalidInputError: no/such/folder: the Folder datamodule's data folder ...
    """
    root = getattr(datamodule, "root", None)
    if not isinstance(datamodule, Folder) or root is None or Path(root).is_dir():
        return
    error = InvalidInputError(
        "the Folder datamodule's data folder does not exist",
        path=root,
        fix="point its root at an existing dataset folder (e.g. the demo's results/demo/data/DEMO_textures_brick)",
    )
    logger.error("%s", error)  # one clear line before any caller's traceback (anomalib's CLI prints a long one)
    raise error


def check_folder_masks(folder: object) -> None:
    """Name the first defect image of an anomalib ``Folder`` that its mask pairing would get wrong.

    anomalib sorts every abnormal image and every mask file and pairs them in that order; a missing
    mask ends in a NumPy error ("cannot assign 5 input values to the 6 output values") that names no
    file. This repeats the pairing up front and says which image lacks its mask, which mask has no
    image, or which image would be given another image's mask. Datamodules without ``abnormal_dir``
    and ``mask_dir`` pass.
    """
    root = getattr(folder, "root", None)
    root = Path(root) if root is not None else None
    extensions = tuple(e.lower() for e in (getattr(folder, "extensions", None) or IMAGE_EXTENSIONS))
    abnormal = _as_dirs(root, getattr(folder, "abnormal_dir", None))
    mask_dirs = _as_dirs(root, getattr(folder, "mask_dir", None))
    if not abnormal or not mask_dirs or not all(d.is_dir() for d in (*abnormal, *mask_dirs)):
        return  # nothing to pair, or anomalib names the missing folder itself

    def files(dirs: list[Path]) -> list[Path]:
        found = (f for d in dirs for f in d.glob("**/*") if f.is_file() and f.suffix.lower() in extensions)
        return sorted(f for f in found if not any(part.startswith(".") for part in f.parts))

    pairs = list(zip(abnormal, mask_dirs, strict=True)) if len(abnormal) == len(mask_dirs) else [(None, None)]
    for image_dir, mask_dir in pairs:  # abnormal_dir[i] goes with mask_dir[i]: stems repeat across types
        type_masks = files([mask_dir] if mask_dir else mask_dirs)
        type_images = files([image_dir] if image_dir else abnormal)
        stems = {m.stem for m in type_masks}
        for image in type_images:
            if image.stem + MASK_SUFFIX not in stems and image.stem not in stems:
                raise MaskError(
                    f"this defect image has no mask in {mask_dir or 'the mask_dir'}",
                    path=image,
                    fix=f"add a mask named {image.stem}{MASK_SUFFIX}.png (or {image.stem}.png), or move the image out",
                )
        image_stems = {image.stem for image in type_images}
        for mask in type_masks:
            if mask.stem.removesuffix(MASK_SUFFIX) not in image_stems and mask.stem not in image_stems:
                raise MaskError(
                    f"this mask has no defect image in {image_dir or 'the abnormal_dir'}",
                    path=mask,
                    fix=f"remove the mask, or add its image to {image_dir or 'the abnormal_dir'}",
                )
    images, masks = files(abnormal), files(mask_dirs)
    for image, mask in zip(images, masks, strict=False):
        if image.stem not in mask.stem:
            raise MaskError(
                f"anomalib's Folder pairs masks with images by sorted path and would give this image {mask.name}",
                path=image,
                fix="list mask_dir in the same order as abnormal_dir, and name masks <image stem>_mask.png",
            )
    if len(masks) > len(images):
        raise MaskError(
            f"mask_dir holds {len(masks)} masks for {len(images)} defect images (e.g. {masks[len(images)].name})",
            path=mask_dirs[0],
            fix="remove the masks that have no image, so that anomalib pairs the rest correctly",
        )


TEST_NORMALS_SPLIT_SEED = 0
"""Seed of anomalib's test-normal hold-out from train (only used without ``test/good``)."""


def mvtec_folder(
    layout: MvtecLayout | str | Path,
    *,
    train_batch_size: int = 8,
    eval_batch_size: int | None = None,
    num_workers: int = 0,
    train_augmentations: Transform | None = None,
) -> Folder:
    """anomalib's ``Folder`` over a scanned MVTec-layout category, named after its folder.

    anomalib's own validation split is off: ``SyntheticAnomalyDataModule`` builds validation itself.
    Without ``test/good``, anomalib holds back train normals as test normals; the split is seeded, so every
    setup (the wrapper's and the trainer's) holds back the same ones and none of them is ever fitted on.
    """
    if not isinstance(layout, MvtecLayout):
        layout = scan_mvtec_folder(layout)
    extensions = sorted({path.suffix.lower() for path in layout.files()})  # Folder filters the mask folders with them too
    types = layout.defect_types
    return Folder(
        name=layout.name,
        root=layout.root,
        normal_dir=f"train/{NORMAL_TYPE}",
        abnormal_dir=[f"test/{t}" for t in types],
        normal_test_dir=f"test/{NORMAL_TYPE}" if layout.test_normals else None,
        mask_dir=[f"ground_truth/{t}" for t in types],
        extensions=tuple(extensions),
        val_split_mode="none",  # validation comes from held-back train normals, never from test
        seed=TEST_NORMALS_SPLIT_SEED,  # unseeded, each setup would draw other test normals from train
        train_batch_size=train_batch_size,
        eval_batch_size=train_batch_size if eval_batch_size is None else eval_batch_size,
        num_workers=num_workers,
        train_augmentations=train_augmentations,
    )


__all__ = ["MASK_SUFFIX", "MvtecLayout", "images_in", "mvtec_folder", "scan_mvtec_folder"]
