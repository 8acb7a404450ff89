#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Places a model directory into the local Hugging Face hub cache exactly as huggingface_hub lays out a download:
<cache>/models--ORG--NAME/blobs/<etag> (sha256 for LFS files, the git blob sha1 for the others),
snapshots/<revision>/<file> as relative symlinks to the blobs, refs/main holding <revision>.
The cache is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. Idempotent: files already in place with
the right content are left alone.

Usage: hf_cache_put.py SOURCE_DIR ORG/NAME REVISION [--expect-sha256 FILE=SHA256 ...]"""
import argparse
import hashlib
import os
import sys
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".h5", ".onnx", ".msgpack", ".ot")  # stored by git LFS on the hub


def hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def etag(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's object id


def put(source: Path, repo_id: str, revision: str, expected: dict) -> Path:
    root = hub_cache() / ("models--" + repo_id.replace("/", "--"))
    snapshot = root / "snapshots" / revision
    for src in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = src.relative_to(source)
        tag = etag(src)
        if str(rel) in expected and expected[str(rel)] != tag:
            sys.exit(f"hf_cache_put: {src}: sha256 {tag}, expected {expected[str(rel)]}")
        blob = root / "blobs" / tag
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            tmp = blob.with_suffix(".incomplete")
            tmp.write_bytes(src.read_bytes())
            tmp.replace(blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(blob, link.parent)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(target)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)  # huggingface_hub writes the commit without a newline
    return snapshot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path)
    ap.add_argument("repo_id")
    ap.add_argument("revision")
    ap.add_argument("--expect-sha256", action="append", default=[], metavar="FILE=SHA256")
    a = ap.parse_args()
    expected = dict(e.split("=", 1) for e in a.expect_sha256)
    print(put(a.source, a.repo_id, a.revision, expected))


if __name__ == "__main__":
    main()
