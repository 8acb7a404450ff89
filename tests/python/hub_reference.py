#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Where huggingface_hub and transformers find a cached model, offline: prints one JSON object
{"snapshot_download": DIR, "config_json": FILE} for the repo id in argv[1] (the cache comes from the environment:
HF_HUB_CACHE / HF_HOME), or {"error": TYPE} when the id is not cached."""
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
from huggingface_hub import snapshot_download  # noqa: E402
from transformers.utils import cached_file  # noqa: E402

repo = sys.argv[1]
try:
    out = {"snapshot_download": snapshot_download(repo, local_files_only=True),
           "config_json": cached_file(repo, "config.json", local_files_only=True)}
except Exception as e:  # the test only needs to know that the lookup failed
    out = {"error": type(e).__name__}
print(json.dumps(out))
