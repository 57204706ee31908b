"""A small stand-in for the Hugging Face Hub on 127.0.0.1, for tests that cannot reach the real one.

It speaks the part of the Hub's HTTP API that `huggingface_hub` uses to download
(`snapshot_download`, `hf_hub_download`) and to publish (`create_repo`, `upload_folder`
with regular, non-LFS files). Repos live in memory as commits of {path: bytes}. `fetch`
runs the app's own download code against it in a fresh process.
"""

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict] = {}  # repo_id -> {"refs": {branch: sha}, "commits": {sha: {path: bytes}}}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.requests: list[str] = []
        self.bytes_per_second: dict[str, float] = {}  # file name -> how slowly it is served (default: at once)
        self.sent: dict[str, int] = {}  # file name -> bytes of it sent so far

    def start(self) -> "FakeHub":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def create_repo(self, repo_id: str) -> None:
        with self.lock:
            self.repos.setdefault(repo_id, {"refs": {}, "commits": {}})

    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Add or replace files on a branch; returns the new commit's 40-hex sha."""
        with self.lock:
            repo = self.repos.setdefault(repo_id, {"refs": {}, "commits": {}})
            parent = repo["refs"].get(branch)
            tree = dict(repo["commits"][parent]) if parent else {}
            tree.update(files)
            digest = hashlib.sha1((parent or "").encode())
            for path in sorted(tree):
                digest.update(path.encode() + hashlib.sha256(tree[path]).digest())
            sha = digest.hexdigest()
            repo["commits"][sha] = tree
            repo["refs"][branch] = sha
            return sha

    def resolve(self, repo_id: str, revision: str) -> str | None:
        repo = self.repos[repo_id]
        if revision in repo["commits"]:
            return revision
        return repo["refs"].get(revision)


def _handler_for(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_HEAD(self):
            self._route(head=True)

        def do_GET(self):
            self._route(head=False)

        def do_POST(self):
            hub.requests.append(f"POST {self.path}")
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            path = urlparse(self.path).path
            if path == "/api/repos/create":
                data = json.loads(body)
                repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                if repo_id in hub.repos:
                    return self._json({"error": "exists"}, 409)
                hub.create_repo(repo_id)
                return self._json({"url": f"{hub.url}/{repo_id}"})
            if path == "/api/validate-yaml":  # model card metadata check before a README upload
                return self._json({"errors": [], "warnings": []})
            match = re.fullmatch(r"/api/models/(.+?)/(preupload|commit)/(.+)", path)
            if not match or match.group(1) not in hub.repos:
                return self._error(404, "RepoNotFound")
            repo_id, action, revision = match.group(1), match.group(2), unquote(match.group(3))
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                             for f in files]})
            files = {}
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] != "header":
                    return self._json({"error": f"{item['key']} is not supported by the fake Hub"}, 400)
            sha = hub.commit(repo_id, files, branch=revision)
            return self._json({"commitUrl": f"{hub.url}/{repo_id}/commit/{sha}", "commitOid": sha})

        def _route(self, head: bool):
            hub.requests.append(f"{'HEAD' if head else 'GET'} {self.path}")
            path = unquote(urlparse(self.path).path)
            api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+))?/?", path)
            resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            match = api or resolve
            if not match or match.group(1) not in hub.repos:
                return self._error(404, "RepoNotFound")
            repo_id = match.group(1)
            revision = (match.group(3) if api else match.group(2)) or "main"
            sha = hub.resolve(repo_id, revision)
            if sha is None:
                return self._error(404, "RevisionNotFound")
            tree = hub.repos[repo_id]["commits"][sha]
            if resolve:
                name = match.group(3)
                if name not in tree:
                    return self._error(404, "EntryNotFound", {"X-Repo-Commit": sha})
                return self._file(name, tree[name], sha, head)
            if api and api.group(2) == "tree":
                return self._json([{"type": "file", "path": p, "size": len(c), "oid": hashlib.sha1(c).hexdigest()}
                                   for p, c in sorted(tree.items())])
            return self._json({"id": repo_id, "modelId": repo_id, "sha": sha, "private": False,
                               "siblings": [{"rfilename": p} for p in sorted(tree)]})

        def _file(self, name: str, content: bytes, sha: str, head: bool):
            """A file as the Hub serves it; slowly (in 4 KiB chunks) when bytes_per_second names it."""
            headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha1(content).hexdigest()}"',
                       "Content-Type": "application/octet-stream"}
            if head or name not in hub.bytes_per_second:
                return self._send(200, b"" if head else content, headers, length=len(content))
            self._send(200, b"", headers, length=len(content))
            chunk = 4096
            try:
                for offset in range(0, len(content), chunk):
                    self.wfile.write(content[offset:offset + chunk])
                    self.wfile.flush()
                    hub.sent[name] = offset + chunk
                    time.sleep(chunk / hub.bytes_per_second[name])
            except (BrokenPipeError, ConnectionResetError):  # the downloader was killed
                return

        def _json(self, data, status: int = 200):
            body = json.dumps(data).encode()
            self._send(status, body, {"Content-Type": "application/json"}, length=len(body))

        def _error(self, status: int, code: str, headers: dict | None = None):
            body = json.dumps({"error": code}).encode()
            self._send(status, body, {"Content-Type": "application/json", "X-Error-Code": code, **(headers or {})},
                       length=len(body))

        def _send(self, status: int, body: bytes, headers: dict, length: int):
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

    return Handler


def fetch(env: dict, repo: str, revision: str | None, timeout: float = 10.0) -> dict:
    """Run explain.hub.fetch_model_folder in a fresh process: huggingface_hub reads
    HF_ENDPOINT and HF_HUB_OFFLINE when it is imported."""
    code = (
        "import json, sys\n"
        "from explain.hub import fetch_model_folder\n"
        "from explain.model import FOLDER_PATTERNS\n"
        "from explain.errors import ModelDownloadError\n"
        "try:\n"
        "    folder, commit = fetch_model_folder(sys.argv[1], sys.argv[2] or None, FOLDER_PATTERNS,\n"
        "                                        float(sys.argv[3]))\n"
        "    print(json.dumps({'folder': str(folder), 'commit': commit}))\n"
        "except ModelDownloadError as err:\n"
        "    print(json.dumps({'error': type(err).__name__, 'message': str(err)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, repo, revision or "", str(timeout)], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
