"""Data discovery: find labelled cell images in the C-NMC layouts, parse subjects, skip bad files."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from leukml import CLASS_NAMES
from leukml.cachedir import cache_path, write_json_atomic
from leukml.images import ImageError, check_image, is_image_name

LAYOUTS_HELP = (
    "expected one of: the C-NMC training layout .../fold_<k>/{all,hem}/*.bmp; a folder of <n>.bmp "
    "with a labels CSV (header Patient_ID,new_names,labels) beside or inside it; or {all,hem}/ "
    "class folders (BMP, PNG, JPEG or TIFF)"
)
CSV_HEADER = ("patient_id", "new_names", "labels")
_FOLD_RE = re.compile(r"^fold_(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Record:
    """One labelled image. ``label`` 1 = ALL (malignant), 0 = hem (normal)."""

    relpath: str
    label: int
    subject: str | None
    fold: int | None
    size_bytes: int


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class Dataset:
    """What leukml sees under ``root``: usable records (sorted by path) and skipped files."""

    root: Path
    records: tuple[Record, ...]
    skipped: tuple[Skipped, ...]
    fingerprint: str

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)

    def paths(self) -> list[Path]:
        return [self.root / r.relpath for r in self.records]


def parse_subject(name: str) -> str | None:
    """Subject id of a C-NMC file name: ``UID_h3_2_1_hem.bmp`` -> ``H3``; None if not that scheme."""
    parts = Path(name).stem.split("_")
    if len(parts) >= 2 and parts[0].upper() == "UID" and parts[1]:
        return parts[1].upper()
    return None


def fingerprint(records: Iterable[Record]) -> str:
    """Hash over sorted relative paths, file sizes and labels."""
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.relpath):
        h.update(f"{r.relpath}\t{r.size_bytes}\t{r.label}\n".encode())
    return h.hexdigest()[:16]


def _is_labels_csv(path: Path) -> bool:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return False
    return tuple(c.strip().lower() for c in header) == CSV_HEADER


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    images, csvs = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if is_image_name(path):
                images.append(path)
            elif name.lower().endswith(".csv") and not name.startswith("."):
                csvs.append(path)
    return images, csvs


def _csv_image_dir(csv_path: Path, names: list[str]) -> Path:
    candidates = [csv_path.parent] + sorted(p for p in csv_path.parent.iterdir() if p.is_dir())
    return max(candidates, key=lambda d: sum((d / n).is_file() for n in names[:50]))


def _from_csv(root: Path, csv_path: Path) -> tuple[list[Record], list[Skipped], set[Path]]:
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        rows = [
            {k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(fh)
        ]
    image_dir = _csv_image_dir(csv_path, [r["new_names"] for r in rows])
    records, skipped, claimed = [], [], set()
    for row in rows:
        path = image_dir / row["new_names"]
        rel = path.relative_to(root).as_posix()
        if row["labels"] not in ("0", "1"):
            skipped.append(Skipped(rel, f"label {row['labels']!r} in {csv_path.name} is not 0 or 1"))
        elif not path.is_file():
            skipped.append(Skipped(rel, f"listed in {csv_path.name} but missing"))
        else:
            subject = parse_subject(row["patient_id"])
            records.append(Record(rel, int(row["labels"]), subject, None, path.stat().st_size))
        claimed.add(path)
    return records, skipped, claimed


def _from_folders(root: Path, path: Path) -> Record | Skipped:
    rel = path.relative_to(root)
    label, fold = None, None
    for part in reversed(rel.parts[:-1]):
        if label is None and part.lower() in CLASS_NAMES:
            label = CLASS_NAMES.index(part.lower())
        match = _FOLD_RE.match(part)
        if fold is None and match:
            fold = int(match.group(1))
    if label is None:
        return Skipped(rel.as_posix(), "unlabelled: not under an all/ or hem/ folder nor in a labels CSV")
    return Record(rel.as_posix(), label, parse_subject(path.name), fold, path.stat().st_size)


def _check_images(root: Path, records: list[Record]) -> dict[str, str]:
    """Decode every candidate once per distinct file set; the verdicts are cached by fingerprint."""
    cached = cache_path("scan", f"{fingerprint(records)}.json")
    if cached.is_file():
        return json.loads(cached.read_text())
    bad: dict[str, str] = {}
    for r in tqdm(records, desc="checking images", unit="img", leave=False, mininterval=1.0):
        try:
            check_image(root / r.relpath)
        except ImageError as exc:
            bad[r.relpath] = str(exc)
        except OSError as exc:
            bad[r.relpath] = f"unreadable ({exc.strerror or exc})"
    write_json_atomic(cached, bad)
    return bad


def discover(data_dir: str | os.PathLike, strict: bool = False) -> Dataset:
    """Find every labelled image under ``data_dir``, at any depth.

    Raises:
        FileNotFoundError: ``data_dir`` is missing.
        ValueError: no usable images, a single class, or (``strict``) any unusable image.
    """
    root = Path(data_dir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"data dir {root} does not exist or is not a folder; {LAYOUTS_HELP}")
    images, csvs = _walk(root)
    candidates, skipped, claimed = [], [], set()
    for csv_path in filter(_is_labels_csv, csvs):
        recs, skips, paths = _from_csv(root, csv_path)
        candidates += recs
        skipped += skips
        claimed |= paths
    for path in images:
        if path not in claimed:
            item = _from_folders(root, path)
            (candidates if isinstance(item, Record) else skipped).append(item)
    bad = _check_images(root, candidates)
    if strict and bad:
        first = next(iter(bad.items()))
        raise ValueError(
            f"{len(bad)} unusable image(s) under {root} with --strict, e.g. "
            f"{first[0]}: {first[1]}; fix or remove them, or drop --strict"
        )
    skipped += [Skipped(p, reason) for p, reason in bad.items()]
    records = sorted((r for r in candidates if r.relpath not in bad), key=lambda r: r.relpath)
    _check_classes(root, records)
    return Dataset(root, tuple(records), tuple(sorted(skipped, key=lambda s: s.path)), fingerprint(records))


def _check_classes(root: Path, records: list[Record]) -> None:
    if not records:
        raise ValueError(f"found no usable labelled images under {root}; {LAYOUTS_HELP}")
    present = {r.label for r in records}
    if len(present) < 2:
        only = CLASS_NAMES[present.pop()]
        raise ValueError(
            f"found only class {only!r} under {root}: both all and hem are needed; {LAYOUTS_HELP}"
        )
