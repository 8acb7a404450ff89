#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""huggingface_hub's side of tests/test_hub_download.cpp (the cache minibert shares with it):
  download ENDPOINT CACHE REPO PATTERN...  snapshot_download(REPO, allow_patterns=PATTERNs) from the mock hub at
                                           ENDPOINT into CACHE; prints {"snapshot": DIR}
  lookup CACHE REPO FILE...                offline (HF_HUB_OFFLINE=1, local_files_only=True): prints {"snapshot":
                                           snapshot_download(...), "files": {FILE: hf_hub_download(...)}}, or
                                           {"error": TYPE} when huggingface_hub does not find them
  lock PATH SECONDS                        takes the lock huggingface_hub takes around a blob download (WeakFileLock
                                           on PATH) and holds it for SECONDS: prints "trying" before, "locked" once it
                                           holds it, "released" after
"""
import json
import os
import sys
import time

os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
mode = sys.argv[1]
if mode == "lookup":
    os.environ["HF_HUB_OFFLINE"] = "1"
else:
    os.environ.pop("HF_HUB_OFFLINE", None)
if mode == "download":
    os.environ["HF_ENDPOINT"] = sys.argv[2]

from huggingface_hub import hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.utils import WeakFileLock  # noqa: E402

if mode == "download":
    endpoint, cache, repo, patterns = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
    snap = snapshot_download(repo, cache_dir=cache, endpoint=endpoint, allow_patterns=patterns or None, token=False)
    print(json.dumps({"snapshot": snap}))
elif mode == "lookup":
    cache, repo, files = sys.argv[2], sys.argv[3], sys.argv[4:]
    try:
        out = {"snapshot": snapshot_download(repo, cache_dir=cache, local_files_only=True),
               "files": {f: hf_hub_download(repo, f, cache_dir=cache, local_files_only=True) for f in files}}
    except Exception as e:  # the test only needs to know that the lookup failed
        out = {"error": type(e).__name__}
    print(json.dumps(out))
elif mode == "lock":
    print("trying", flush=True)
    with WeakFileLock(sys.argv[2]):
        print("locked", flush=True)
        time.sleep(float(sys.argv[3]))
    print("released", flush=True)
else:
    sys.exit(f"unknown mode {mode}")
