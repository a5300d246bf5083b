"""`facetrain rewarp`: faces already aligned to the standard 112x112 five-point crop, re-warped
into another model's geometry (e.g. dlib's 150x150 chip), for training or fine-tuning that
model on the shared aligned sets.

The standard crop's five points are where the template puts them, so the re-warp is one
similarity per image; what the standard crop does not cover is black (for dlib's chip, the
bottom ~13 rows). OUT gets the model's alignment record (`align_config.json`), which `pack`
and training carry into the trained model. Resumable: faces already written are skipped;
every file is written atomically; an unreadable image is listed with its reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from facetrain import atomic
from facetrain.align.job import encode_jpeg
from facetrain.align.transform import rewarp_standard
from facetrain.data.alignment import read_alignment
from facetrain.data.images import ImageError, load_rgb
from facetrain.data.listing import DatasetError, Problems, iter_samples
from facetrain.run_folder import ALIGN_RECORD


@dataclass
class RewarpSummary:
    written: int = 0
    done_before: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # path → why


def rewarp_dataset(roots, out: str | os.PathLike, alignment: dict, *, quality: int = 95,
                   progress: bool | None = None) -> RewarpSummary:  # fmt: skip
    """Every face of `roots` (standard 112x112 crops, any square size) into `alignment`'s
    geometry (similarity mode with a template), as OUT/<identity>/<name>.jpg."""
    from facetrain.progress import progress_bar

    if alignment.get("mode", "similarity") != "similarity" or "size" not in alignment:
        raise DatasetError("rewarp makes five-point (similarity) crops: the model has none")
    out = Path(out)
    _check_record(out, alignment, roots)
    samples = list(iter_samples(roots, problems=Problems()))
    rep = RewarpSummary()
    with progress_bar(disable=progress is False if progress is not None else None) as bar:
        task = bar.add_task("rewarp", total=len(samples))
        for s in samples:
            bar.advance(task)
            dst = out / s.identity / f"{s.name}.jpg"
            if dst.exists():
                rep.done_before += 1
                continue
            try:
                face = load_rgb(s.path)
            except (ImageError, OSError) as e:
                rep.skipped[s.path] = getattr(e, "reason", str(e))
                continue
            crop = rewarp_standard(face, int(alignment["size"]), alignment.get("template"))
            atomic.write_bytes(dst, encode_jpeg(crop, quality))
            rep.written += 1
    return rep


def _check_record(out: Path, alignment: dict, roots) -> None:
    """OUT holds faces of one geometry: a folder made for another is refused, and so are a
    folder inside the faces read (they would mix) and a folder of the user's."""
    atomic.output_folder(out, inputs=roots, own=(ALIGN_RECORD,), kind="re-warped faces")
    rec = out / ALIGN_RECORD
    if rec.exists():
        if read_alignment(out) != json.loads(json.dumps(alignment)):
            raise DatasetError(f"{out} holds faces of another alignment ({rec}); use a new OUT")
        return
    atomic.write_text(rec, json.dumps(alignment, indent=2) + "\n")
