"""The cost of identifying a dataset by its bytes (leukml.data.filehash, leukml.data.discovery).

Writes N valid 450x450 24-bit BMP files (C-NMC's size: 608,454 bytes each, random pixels, so no two
are alike) in the C-NMC training layout, then times, in this one process:

- first fingerprint: every file read and SHA-256 hashed (``content_digests`` with an empty memo),
  once with the files in the page cache (just written) and, when this user may drop the page
  cache, once cold;
- later fingerprint: the same call again, where the stat memo skips every unchanged file;
- later discovery: the whole ``discover()`` of a second run (walk, stat, digests from the memo,
  cached scan verdicts), which is what every training pays before it starts;

Target (issue 12): later runs <= 2 s on 10,661 files on the 2-core machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import harness
import numpy as np
from PIL import Image

SIDE = 450


def write_dataset(root: Path, n: int, seed: int = 0) -> int:
    """``n`` BMPs of random pixels under fold_<k>/{all,hem}/; returns the bytes written."""
    template = root / "template.bmp"
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (SIDE, SIDE)).save(template)
    data = bytearray(template.read_bytes())
    template.unlink()
    offset = int.from_bytes(data[10:14], "little")  # start of the pixel array
    rng = np.random.default_rng(seed)
    for i in range(n):
        cls = "all" if i % 3 else "hem"
        folder = root / "C-NMC_Leukemia" / "training_data" / f"fold_{i % 3}" / cls
        folder.mkdir(parents=True, exist_ok=True)
        data[offset:] = rng.bytes(len(data) - offset)
        (folder / f"UID_{'h' if cls == 'hem' else ''}{i % 70}_{i}_1_{cls}.bmp").write_bytes(data)
    return n * len(data)


def drop_page_cache() -> bool:
    """Flush and drop the page cache when allowed (root on a host that permits it)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> None:
    args = harness.Parser(__doc__, "a smoke run", images=(10_661, 300, "BMP files")).parse_args()
    n = args.images

    work = harness.workdir("fingerprint")
    from leukml.data import filehash
    from leukml.data.discovery import discover

    try:
        root = work / "data"
        seconds, size = harness.timed(write_dataset, root, n)
        print(f"wrote {n} BMPs of {size / n:,.0f} bytes ({size / 1e9:.2f} GB) in {seconds:.1f} s", flush=True)
        time.sleep(filehash.RACY_S + 0.1)  # files changed within the racy window are never memoised
        relpaths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.bmp"))

        rows = []
        memo = filehash._memo_path(root)
        warm, _ = harness.timed(filehash.content_digests, root, relpaths)
        rows.append(("first fingerprint, files in page cache", warm))
        cold_ok = drop_page_cache()
        if cold_ok:
            memo.unlink()
            cold, _ = harness.timed(filehash.content_digests, root, relpaths)
            rows.append(("first fingerprint, cold page cache", cold))
        later, (digests, errors) = harness.timed(filehash.content_digests, root, relpaths)
        assert not errors and len(digests) == n
        rows.append(("later fingerprint (stat memo)", later))

        print("first discovery (decode check of every image) ...", flush=True)
        first_discover, dataset = harness.timed(discover, root)
        assert len(dataset) == n
        later_discover, again = harness.timed(discover, root)
        assert again.fingerprint == dataset.fingerprint
        rows.append(("first discovery (digests memoised; decodes every image once)", first_discover))
        rows.append(("later discovery (what a training pays)", later_discover))
        print(f"\n{n} files, {size / 1e9:.2f} GB, {os.cpu_count()} CPU(s), python {sys.version.split()[0]}\n")
        harness.table("what", "seconds", "files/s")
        for name, secs in rows:
            print(f"| {name} | {secs:.2f} | {n / secs:,.0f} |")
        if not cold_ok:
            print("\n(page cache could not be dropped here: no cold-cache row)")
        ok = "met" if later_discover <= 2.0 else "MISSED"
        harness.headline(
            f"dataset fingerprint {n} files: first {warm:.1f} s, later {later:.2f} s, "
            f"later discovery {later_discover:.2f} s (target <= 2 s: {ok})"
        )
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
