"""Writers of one prepared split, by ``--format`` (:data:`PREPARE_FORMATS`): PNG files or
WebDataset shards.

A writer is built for one split (``spec``, split name, records), tells in :meth:`plan` which films
are still to be prepared (jobs for :func:`~cxr.data.prepare.film.film_job`), then in
:meth:`finish` takes their results in job order and writes what completes the split, returning
its manifest and error rows. Work already on disk is reused: a PNG file exists only once complete
(temp file + rename); a shard exists only once complete (written to a temp file, renamed); a
split's ``records.json`` / ``index.json`` is written last.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import struct
import tarfile
import zlib
from typing import Iterator

import numpy as np

from ...fileio import atomic_open, json_safe, write_json_atomic
from ...registry import NamedRegistry
from ..datasets.prepared import RECORDS_FILE
from ..io import ImageReadError, read_xray_size
from .copy import CopySpec
from .film import FilmResult, safe_keys, scale_record, target_scale

__all__ = ["PREPARE_FORMATS", "PngSplitWriter", "ShardSplitWriter", "remove_temp_files"]

logger = logging.getLogger(__name__)

PREPARE_FORMATS = NamedRegistry("CXR_PREPARE_FORMAT")
PREPARE_FORMATS.__doc__ = "--format name -> writer class (spec, split name, records)."
INDEX_FILE = "index.json"
_TAR_MTIME = 0  # fixed member times: the same films give byte-identical shards (an int: a
# float time would add a pax header to every member, which readers parse too)


def remove_temp_files(folder: str) -> int:
    """Delete the temp files (``.<name>.*.tmp``) a killed run left in ``folder``."""
    paths = glob.glob(os.path.join(glob.escape(folder), ".*.tmp"))
    for p in paths:
        os.remove(p)
    return len(paths)


def _png_hw(path: str) -> tuple[int, int] | None:
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", head[16:24])
    return int(h), int(w)


class _SplitWriter:
    """Shared planning: the split's records, their keys and result bookkeeping."""

    def __init__(self, spec: CopySpec, name: str, records: list[dict]):
        self.spec, self.name, self.records = spec, name, list(records)
        self.keys = safe_keys([r["image_id"] for r in self.records])
        self.split_dir = os.path.join(spec.folder, name)
        self.results: dict[int, FilmResult] = {}

    def job(self, i: int, dest: str | None) -> tuple:
        r = self.records[i]
        return (i, r["file_name"], self.spec.size, self.spec.bit_depth, dest)

    def rows(self, i: int, output: str) -> tuple[dict | None, dict | None]:
        """(manifest row, error row) of film ``i``."""
        r, res = self.records[i], self.results[i]
        if "error" in res:
            return None, {"dataset": self.name, "image_id": r["image_id"],
                          "source_path": r["file_name"], "error": res["error"]}  # fmt: skip
        return {
            "dataset": self.name, "image_id": r["image_id"], "patient_id": r.get("patient_id", ""),
            "source_path": r["file_name"], "source_height": res["source_height"],
            "source_width": res["source_width"], "scale": repr(float(res["scale"])),
            "output": output, "sha256": res["sha256"],
        }, None  # fmt: skip


@PREPARE_FORMATS.register_as("png")
class PngSplitWriter(_SplitWriter):
    """``<name>/images/<key>.png`` per film, then ``<name>/records.json`` (file names relative
    to ``<name>/``)."""

    def _dest(self, i: int) -> str:
        return os.path.join(self.split_dir, "images", self.keys[i] + ".png")

    def _finished(self, i: int) -> FilmResult | None:
        """The result of film ``i`` from its PNG on disk, or None when it must be made."""
        dest = self._dest(i)
        if not os.path.isfile(dest):
            return None
        try:
            src_h, src_w = read_xray_size(self.records[i]["file_name"])
        except ImageReadError:
            return None
        scale = target_scale(src_h, src_w, self.spec.size)
        want = (max(1, round(src_h * scale)), max(1, round(src_w * scale)))
        if _png_hw(dest) != want:
            return None
        with open(dest, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        return FilmResult(index=i, height=want[0], width=want[1], scale=scale,
                          source_height=src_h, source_width=src_w, sha256=sha)  # fmt: skip

    def plan(self) -> list[tuple]:
        os.makedirs(os.path.join(self.split_dir, "images"), exist_ok=True)
        remove_temp_files(os.path.join(self.split_dir, "images"))
        remove_temp_files(self.split_dir)
        jobs = []
        for i in range(len(self.records)):
            done = self._finished(i)
            if done is None:
                jobs.append(self.job(i, self._dest(i)))
            else:
                self.results[i] = done
        return jobs

    def finish(self, results: Iterator[FilmResult], num: int) -> tuple[list[dict], list[dict]]:
        for _ in range(num):
            res = next(results)
            self.results[res["index"]] = res
        out, manifest, errors = [], [], []
        for i, r in enumerate(self.records):
            rel = f"images/{self.keys[i]}.png"
            row, err = self.rows(i, f"{self.name}/{rel}")
            if err:
                errors.append(err)
                continue
            manifest.append(row)
            out.append(scale_record(r, self.results[i], rel))
        write_json_atomic(os.path.join(self.split_dir, RECORDS_FILE), json_safe(out))
        return manifest, errors


@PREPARE_FORMATS.register_as("wds")
class ShardSplitWriter(_SplitWriter):
    """``<name>/shard-%06d.tar`` (``webdataset.TarWriter``; per sample ``<key>.png`` and
    ``<key>.json``), samples in a seeded order across shards, then ``<name>/index.json``."""

    def __init__(self, spec: CopySpec, name: str, records: list[dict]):
        super().__init__(spec, name, records)
        rng = np.random.default_rng(np.random.SeedSequence([spec.seed, zlib.crc32(name.encode())]))
        order = rng.permutation(len(self.records)).tolist()
        n = int(spec.shard_size)
        self.shards = [order[k : k + n] for k in range(0, len(order), n)]
        self.pending: list[int] = []

    def fingerprint(self) -> str:
        """Hash of the sample order and shard size: shards made under another plan are stale."""
        text = json.dumps([self.spec.shard_size, [[self.keys[i] for i in s] for s in self.shards]])
        return hashlib.sha256(text.encode()).hexdigest()

    def shard_path(self, k: int) -> str:
        return os.path.join(self.split_dir, f"shard-{k:06d}.tar")

    def remove_stale(self) -> None:
        """Delete this split's shards and index (made under another plan)."""
        for p in glob.glob(os.path.join(glob.escape(self.split_dir), "shard-*.tar")):
            os.remove(p)
        if os.path.isfile(os.path.join(self.split_dir, INDEX_FILE)):
            os.remove(os.path.join(self.split_dir, INDEX_FILE))

    def _read_shard(self, k: int) -> bool:
        """Take the results of complete shard ``k`` from its file; False when it must be made."""
        by_key = {self.keys[i]: i for i in self.shards[k]}
        try:
            with tarfile.open(self.shard_path(k)) as tar:
                for m in tar.getmembers():
                    key, _, ext = m.name.partition(".")
                    data = tar.extractfile(m).read()
                    i = by_key[key]
                    res = self.results.setdefault(i, FilmResult(index=i))
                    if ext == "png":
                        res["sha256"] = hashlib.sha256(data).hexdigest()
                    else:
                        rec = json.loads(data)
                        res.update(height=rec["height"], width=rec["width"], scale=rec["scale"],
                                   source_height=rec["orig_height"],
                                   source_width=rec["orig_width"])  # fmt: skip
        except (OSError, tarfile.TarError, KeyError, ValueError) as e:
            logger.warning("%s unreadable (%s): it is made again", self.shard_path(k), e)
            return False
        for i in self.shards[k]:  # a film missing from a complete shard could not be read
            self.results.setdefault(i, FilmResult(index=i, error="unreadable in an earlier run"))
        return True

    def plan(self) -> list[tuple]:
        os.makedirs(self.split_dir, exist_ok=True)
        remove_temp_files(self.split_dir)
        jobs = []
        for k, idx in enumerate(self.shards):
            if os.path.isfile(self.shard_path(k)) and self._read_shard(k):
                continue
            for i in idx:
                self.results.pop(i, None)
            self.pending.append(k)
            jobs += [self.job(i, None) for i in idx]
        return jobs

    def _write_shard(self, k: int, results: Iterator[FilmResult]) -> None:
        import webdataset as wds

        with atomic_open(self.shard_path(k), "wb") as f:
            writer = wds.TarWriter(f, encoder=False, mtime=_TAR_MTIME)
            for i in self.shards[k]:
                res = next(results)
                self.results[i] = res
                if "error" in res:
                    continue
                rec = scale_record(self.records[i], res, "")
                rec.pop("file_name")
                rec.setdefault("annotations", [])  # image-label records have none
                text = json.dumps(json_safe(rec), sort_keys=True).encode("utf-8")
                writer.write({"__key__": self.keys[i], "png": res["data"], "json": text})
                res["data"] = None
            writer.close()

    def finish(self, results: Iterator[FilmResult], num: int) -> tuple[list[dict], list[dict]]:
        for k in self.pending:
            self._write_shard(k, results)
        manifest, errors, shards = [], [], []
        for k, idx in enumerate(self.shards):
            file = os.path.basename(self.shard_path(k))
            n = 0
            for i in idx:
                row, err = self.rows(i, f"{self.name}/{file}#{self.keys[i]}")
                manifest += [row] if row else []
                errors += [err] if err else []
                n += row is not None
            shards.append({"file": file, "num_samples": n})
        task = "classification" if any("labels" in r for r in self.records) else "detection"
        index = {"dataset": self.name, "num_samples": len(manifest), "shards": shards,
                 "task": task}  # fmt: skip
        write_json_atomic(os.path.join(self.split_dir, INDEX_FILE), index)
        return manifest, errors
