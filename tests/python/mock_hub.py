#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A mock Hugging Face Hub on the loopback address, for tests/test_hub_download.cpp.

Usage: mock_hub.py --log LOG.jsonl --dump DIR
Prints "PORT <n>" once it listens on 127.0.0.1:<n> (an ephemeral port), then serves until killed.

It answers as huggingface.co does for what huggingface_hub 0.26 (and minibert) ask:
  GET  /api/models/{org}/{name}/revision/{revision}   {"id", "sha", "siblings": [{"rfilename"}]}
  HEAD /{org}/{name}/resolve/{revision}/{file}         X-Repo-Commit; a regular file: 200 with ETag (its git blob
                                                       sha1, quoted) and Content-Length; an LFS file: 302 to
                                                       http://localhost:<port>/lfs/... (another host name, as the
                                                       file store is) with X-Linked-Etag (its sha256, quoted) and
                                                       X-Linked-Size
  GET  the same                                        the file (regular), or the same 302 (LFS)
  GET  /lfs/{repo folder}/{sha256}                     the LFS content; honours "Range: bytes=N-" with a 206
Errors as the hub sends them: 404 with X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound, 401 for the
gated repository without the right token.

Repositories (org "acme"):
  tiny-bert     config.json, vocab.txt, tokenizer_config.json, README.md (a weak W/ ETag), model.safetensors (LFS,
                1 MiB), pytorch_model.bin (LFS), flax_model.msgpack (LFS), onnx/model.onnx; revisions main and v1
                (v1: another config.json, the same model.safetensors)
  old-name      redirects (relative Location, 307) to tiny-bert, as a renamed repository does
  gated-bert    401 unless "Authorization: Bearer hf_mock_token" (the file store's URL needs no token)
  flaky-bert    the LFS file's GET without a Range header sends half the file, then drops the connection
  stalled-bert  the LFS file's GET sends its headers and no byte of the body, then drops the connection
  corrupt-bert  the LFS file's content does not match its sha256 ETag
  slow-bert     the LFS file comes in 20 pieces 40 ms apart
  hang-bert     HEAD and GET of the resolve URLs answer after 4 s
  evil          revisions whose answers try to escape the cache: dotdot (a sibling "../../escape.txt"), absolute
                ("/tmp/escape.txt"), etag (ETag "../../../escape"), commit (sha "../../escape")
  badjson       revisions: main (truncated JSON), nosha ({"siblings": []}), badsibling ({"sha", "siblings": [{}]})

Every request is appended to LOG as one JSON line: method, path, host, authorization, range, status, sent (body
bytes written before the answer ended or the connection dropped). DIR receives manifest.json ({repo: {revision:
{"commit", "files": {name: {"etag", "size", "lfs", "dump"}}}}}) and each file's bytes, so a test compares what it
got with what was served without trusting the code under test.
"""
import argparse
import hashlib
import json
import os
import random
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

TOKEN = "hf_mock_token"


def commit_of(repo, revision):
    return hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def pseudo_random(seed, n):
    return random.Random(seed).randbytes(n)


class Entry:
    def __init__(self, data, lfs=False, weak_etag=False, etag=None):
        self.data = data
        self.lfs = lfs
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.etag = etag or (self.sha256 if lfs else git_blob_sha1(data))
        self.weak_etag = weak_etag


def bert_files(seed, hidden=32):
    config = json.dumps({"model_type": "bert", "hidden_size": hidden, "num_hidden_layers": 1}, indent=2).encode()
    return {
        "config.json": Entry(config),
        "vocab.txt": Entry(b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n"),
        "tokenizer_config.json": Entry(b'{"do_lower_case": true}'),
        "README.md": Entry(b"# a mock model\n", weak_etag=True),
        "model.safetensors": Entry(pseudo_random(seed, 1 << 20), lfs=True),
        "pytorch_model.bin": Entry(pseudo_random(seed + 1, 300_000), lfs=True),
        "flax_model.msgpack": Entry(pseudo_random(seed + 2, 1000), lfs=True),
        "onnx/model.onnx": Entry(b"onnx bytes"),
    }


def build_repos():
    tiny_main = bert_files(1)
    tiny_v1 = dict(tiny_main)
    tiny_v1["config.json"] = Entry(json.dumps({"model_type": "bert", "hidden_size": 64}).encode())
    def pick(files, *names):
        return {k: v for k, v in files.items() if k in names}

    small = pick(bert_files(2), "config.json", "vocab.txt", "model.safetensors")
    corrupt = dict(small)
    bad = Entry(pseudo_random(3, 4096), lfs=True)
    bad.data = pseudo_random(4, 4096)  # served bytes differ from what the sha256 ETag promises
    corrupt["model.safetensors"] = bad
    evil_ok = {"config.json": Entry(b"{}")}
    repos = {
        "acme/tiny-bert": {"main": tiny_main, "v1": tiny_v1},
        "acme/gated-bert": {"main": small},
        "acme/flaky-bert": {"main": pick(bert_files(5), "config.json", "model.safetensors")},
        "acme/stalled-bert": {"main": small},
        "acme/corrupt-bert": {"main": corrupt},
        "acme/slow-bert": {"main": pick(bert_files(6), "config.json", "model.safetensors")},
        "acme/hang-bert": {"main": small},
        "acme/evil": {"dotdot": dict(evil_ok, **{"../../escape.txt": Entry(b"x")}),
                      "absolute": dict(evil_ok, **{"/tmp/escape.txt": Entry(b"x")}),
                      "etag": {"config.json": Entry(b"{}", etag="../../../escape")},
                      "commit": evil_ok},
        "acme/badjson": {"main": evil_ok, "nosha": evil_ok, "badsibling": evil_ok},
    }
    commits = {repo: {rev: commit_of(repo, rev) for rev in revs} for repo, revs in repos.items()}
    commits["acme/evil"]["commit"] = "../../escape"
    return repos, commits


REPOS, COMMITS = build_repos()
RENAMED = {"acme/old-name": "acme/tiny-bert"}


def files_at(repo, revision):
    """the files of `repo` at a revision name or commit, with the commit; None when unknown"""
    for rev, files in REPOS[repo].items():
        if revision in (rev, COMMITS[repo][rev]):
            return files, COMMITS[repo][rev]
    return None, None


def lfs_entry(folder, sha):
    for repo, revs in REPOS.items():
        if repo.replace("/", "--") == folder:
            for files in revs.values():
                for e in files.values():
                    if e.lfs and e.etag == sha:
                        return repo, e
    return None, None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-hub/1"

    def log_message(self, *args):  # quiet: the JSON log says what happened
        pass

    # -------------------------------------------------------------------- plumbing

    def record(self, status, sent):
        entry = {"method": self.command, "path": self.path, "host": self.headers.get("Host"),
                 "authorization": self.headers.get("Authorization"), "range": self.headers.get("Range"),
                 "status": status, "sent": sent}
        with self.server.log_lock, open(self.server.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def answer(self, status, headers=(), body=b"", send=None):
        """status, headers and body (HEAD: no body); `send` cuts the body short and drops the connection. The request
        is logged before its answer goes out, so the client never sees an answer end before the log has it."""
        part = b"" if self.command == "HEAD" else body if send is None else body[:send]
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.record(status, len(part))
        self.end_headers()
        self.wfile.write(part)
        self.wfile.flush()
        if send is not None and send < len(body) and self.command != "HEAD":
            self.drop()

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def error(self, status, code, message, commit=None):
        headers = [("X-Error-Code", code), ("X-Error-Message", message), ("Content-Type", "application/json")]
        if commit:
            headers.append(("X-Repo-Commit", commit))
        self.answer(status, headers, json.dumps({"error": message}).encode())

    def authorized(self, repo):
        return repo != "acme/gated-bert" or self.headers.get("Authorization") == f"Bearer {TOKEN}"

    # -------------------------------------------------------------------- routes

    def do_HEAD(self):
        self.route()

    def do_GET(self):
        self.route()

    def route(self):
        path = self.path.split("?")[0]
        if path.startswith("/api/models/") and "/revision/" in path:
            repo, rev = path[len("/api/models/"):].split("/revision/", 1)
            return self.revision_api(repo, unquote(rev))
        if "/resolve/" in path:
            repo, rest = path[1:].split("/resolve/", 1)
            rev, _, name = rest.partition("/")
            return self.resolve(repo, unquote(rev), unquote(name))
        if path.startswith("/lfs/"):
            _, _, folder, sha = path.split("/", 3)
            return self.lfs(folder, sha)
        self.error(404, "NotFound", "no such route")

    def revision_api(self, repo, rev):
        if repo in RENAMED:
            return self.answer(307, [("Location", self.path.replace(repo, RENAMED[repo]))])
        if repo not in REPOS:
            return self.error(404, "RepoNotFound", "Repository not found")
        if not self.authorized(repo):
            return self.error(401, "GatedRepo", "Access to model acme/gated-bert is restricted")
        files, commit = files_at(repo, rev)
        if files is None:
            return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
        if repo == "acme/badjson":
            body = {"main": b'{"id": "acme/badjson", "sha": "abc", "siblings": [{"rfilename": "con',
                    "nosha": json.dumps({"id": repo, "siblings": []}).encode(),
                    "badsibling": json.dumps({"id": repo, "sha": commit, "siblings": [{"name": 1}]}).encode()}[rev]
            return self.answer(200, [("Content-Type", "application/json")], body)
        info = {"id": repo, "sha": commit, "private": False, "siblings": [{"rfilename": n} for n in files]}
        self.answer(200, [("Content-Type", "application/json")], json.dumps(info).encode())

    def resolve(self, repo, rev, name):
        if repo in RENAMED:
            return self.answer(307, [("Location", self.path.replace(repo, RENAMED[repo], 1))])
        if repo not in REPOS:
            return self.error(404, "RepoNotFound", "Repository not found")
        if not self.authorized(repo):
            return self.error(401, "GatedRepo", "Access to model acme/gated-bert is restricted")
        if repo == "acme/hang-bert":
            time.sleep(4)
        files, commit = files_at(repo, rev)
        if files is None:
            return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
        e = files.get(name)
        if e is None:
            return self.error(404, "EntryNotFound", "Entry not found", commit)
        headers = [("X-Repo-Commit", commit)]
        if e.lfs:
            port = self.server.server_address[1]
            location = f"http://localhost:{port}/lfs/{repo.replace('/', '--')}/{e.etag}"
            headers += [("Location", location), ("X-Linked-Etag", f'"{e.etag}"'),
                        ("X-Linked-Size", str(len(e.data))), ("ETag", f'"{git_blob_sha1(b"pointer" + e.data)}"')]
            return self.answer(302, headers)
        headers.append(("ETag", f'W/"{e.etag}"' if e.weak_etag else f'"{e.etag}"'))
        self.answer(200, headers, e.data)

    def lfs(self, folder, sha):
        repo, e = lfs_entry(folder, sha)
        if e is None:
            return self.error(404, "EntryNotFound", "no such LFS object")
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(e.data):
                return self.answer(416, [("Content-Range", f"bytes */{len(e.data)}")])
        body = e.data[start:]
        status = 206 if rng else 200
        headers = [("Content-Range", f"bytes {start}-{len(e.data) - 1}/{len(e.data)}")] if rng else []
        if repo == "acme/flaky-bert" and not rng:
            return self.answer(status, headers, body, send=len(body) // 2)
        if repo == "acme/stalled-bert":
            return self.answer(status, headers, body, send=0)
        if repo == "acme/slow-bert":
            return self.answer_slowly(status, headers, body)
        self.answer(status, headers, body)

    def answer_slowly(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        piece = len(body) // 20 + 1
        for i in range(0, len(body), piece):
            if i + piece >= len(body):
                self.record(status, len(body))  # before the last piece: logged before the client has it all
            self.wfile.write(body[i:i + piece])
            self.wfile.flush()
            time.sleep(0.04)


def dump(directory):
    """every file's bytes and a manifest of what the mock serves"""
    manifest = {}
    for repo, revs in REPOS.items():
        manifest[repo] = {}
        for rev, files in revs.items():
            commit = COMMITS[repo][rev]
            entries = {}
            for name, e in files.items():
                target = os.path.join(directory, repo.replace("/", "--"), rev, str(len(entries)))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    f.write(e.data)
                entries[name] = {"etag": e.etag, "sha256": e.sha256, "size": len(e.data), "lfs": e.lfs,
                                 "dump": target}
            manifest[repo][rev] = {"commit": commit, "files": entries}
    with open(os.path.join(directory, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--dump", required=True)
    args = ap.parse_args()
    dump(args.dump)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.log_path = args.log
    server.log_lock = threading.Lock()
    open(args.log, "w").close()
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
