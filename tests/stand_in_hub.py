"""A local stand-in for the Hugging Face Hub's HTTP API, for testing pushes and downloads without a network.

It answers the calls that `huggingface_hub`'s own client makes, so that the code under test is the real client:

- upload: `HfApi.create_repo` (`POST /api/repos/create`), `create_branch` (`POST /api/models/{repo}/branch/{name}`),
  `upload_folder` / `create_commit`: README metadata check (`POST /api/validate-yaml`), upload modes
  (`POST /api/models/{repo}/preupload/{rev}`), the git-LFS batch API (`POST /{repo}.git/info/lfs/objects/batch`,
  then a basic-transfer `PUT` and a verify `POST` per object) and the commit itself (`POST
  /api/models/{repo}/commit/{rev}`, ndjson);
- download: `hf_hub_download` (`HEAD` / `GET /{repo}/resolve/{rev}/{path}` with `X-Repo-Commit`, `ETag`,
  `X-Linked-Etag`, `X-Linked-Size`, `Content-Length`), `model_info` (`GET /api/models/{repo}[/revision/{rev}]`),
  `list_repo_tree` (`GET /api/models/{repo}/tree/{rev}[/{path}]`), `get_paths_info` (`POST .../paths-info/{rev}`),
  `whoami` (`GET /api/whoami-v2`).

Xet storage is not emulated (its protocol lives in the `hf_xet` binary): clients must run with
`HF_HUB_DISABLE_XET=1`, which makes `huggingface_hub` use the preupload + LFS path that this server implements.

Write calls need `Authorization: Bearer <token>` with a token of `tokens`; `reject_all=True` answers 401 to every
call, as the Hub does for a revoked token. Every request is recorded in `requests` (method, path, token) and calls
it does not know in `unknown`, so that a test sees what the client asked. File contents are stored by sha256 under
`root`; repositories, branches and commits are kept in memory.

    with StandInHub(tmp_path / "hub", tokens={"hf_secret": "alice"}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_secret"}
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

# stored through LFS, as the Hub's default .gitattributes says (abridged); others are regular git blobs
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.onnx", "*.pkl", "*.npy", "*.npz")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS).encode()
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(path: str, size: int) -> bool:
    return size >= LFS_MIN_SIZE or any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS)


class HubError(Exception):
    """An error answer: status, message, and the `X-Error-Code` the client uses to pick its exception."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class StandInHub:
    """The server and its state. Use as a context manager, or call `start()` / `stop()`."""

    def __init__(self, root, tokens: dict[str, str] | None = None, reject_all: bool = False):
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tokens = dict(tokens or {})  # token -> user name
        self.reject_all = reject_all
        self.repos: dict[str, dict] = {}  # repo id -> {"private", "refs": {branch: oid}, "commits": {oid: commit}}
        self.requests: list[tuple[str, str, str | None]] = []
        self.unknown: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- life cycle ---------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandInHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> StandInHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- what tests read ----------------------------------------------------------------------------------------

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Path -> content of every file of `repo_id` at `revision`."""
        tree = self._commit(self.repos[repo_id], revision)[1]["tree"]
        return {path: (self.objects / entry["sha256"]).read_bytes() for path, entry in tree.items()}

    def tokens_seen(self) -> set[str | None]:
        return {token for _, _, token in self.requests}

    # ---- state --------------------------------------------------------------------------------------------------

    def _store(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        (self.objects / sha256).write_bytes(data)
        return sha256

    def _entry(self, path: str, data: bytes) -> dict:
        return {
            "sha256": self._store(data),
            "size": len(data),
            "git_oid": _git_blob_sha1(data),
            "lfs": _is_lfs(path, len(data)),
        }

    def _new_commit(self, repo: dict, parent: str | None, tree: dict, message: str) -> str:
        body = json.dumps({"parent": parent, "message": message, "tree": tree, "time": time.time()}, sort_keys=True)
        oid = hashlib.sha1(body.encode()).hexdigest()
        repo["commits"][oid] = {"parent": parent, "message": message, "tree": tree}
        return oid

    def _repo(self, repo_id: str, user: str | None) -> dict:
        """The repository, if `user` (None: anonymous) may see it."""
        repo = self.repos.get(repo_id)
        if repo is None or (repo["private"] and user != repo["owner"]):
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    @staticmethod
    def _commit(repo: dict, revision: str) -> tuple[str, dict]:
        """(commit oid, commit) of a branch name or commit oid."""
        oid = repo["refs"].get(revision, revision)
        if oid not in repo["commits"]:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return oid, repo["commits"][oid]


class _Handler(BaseHTTPRequestHandler):
    hub: StandInHub
    protocol_version = "HTTP/1.1"

    # ---- plumbing -----------------------------------------------------------------------------------------------

    def log_message(self, format, *args):  # quiet: requests are recorded in hub.requests
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(value).encode(), headers)

    def _token(self) -> str | None:
        authorization = self.headers.get("Authorization", "")
        return authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else None

    def _user(self, required: bool) -> str | None:
        """The token's user; a missing or unknown token is refused for writes (and always under `reject_all`)."""
        token = self._token()
        if self.hub.reject_all or (token is not None and token not in self.hub.tokens):
            raise HubError(401, INVALID_CREDENTIALS)
        if token is None and required:
            raise HubError(401, "You must be authenticated to do this")
        return self.hub.tokens.get(token)

    def _dispatch(self):
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        self.hub.requests.append((self.command, unquote(path), self._token()))
        body = self._body() if self.command in ("POST", "PUT") else b""
        try:
            for method, pattern, handler in ROUTES:
                match = re.fullmatch(pattern, path)  # on the quoted path: a revision may hold an encoded "/"
                if method == self.command and match:
                    groups = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    with self.hub._lock:
                        return handler(self, body, query, **groups)
            self.hub.unknown.append(f"{self.command} {self.path}")
            raise HubError(404, f"Not handled by the stand-in Hub: {self.command} {path}")
        except Exception as error:
            if not isinstance(error, HubError):  # a bug of the stand-in: say so instead of dropping the connection
                self.hub.unknown.append(f"{self.command} {self.path}: {type(error).__name__}: {error}")
                error = HubError(500, f"Stand-in Hub error: {type(error).__name__}: {error}")
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            self._json({"error": error.message}, error.status, headers)

    do_GET = do_HEAD = do_POST = do_PUT = _dispatch

    # ---- repositories -------------------------------------------------------------------------------------------

    def create_repo(self, body, query):
        user = self._user(required=True)
        payload = json.loads(body)
        if payload.get("type", "model") != "model":
            raise HubError(400, "The stand-in Hub holds model repositories only")
        namespace = payload.get("organization") or user
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.hub.url}/{repo_id}"
        if repo_id in self.hub.repos:
            return self._json({"error": "You already created this model repo", "url": url}, 409)
        private = payload.get("private") or payload.get("visibility") == "private"
        repo = {"private": bool(private), "owner": user, "refs": {}, "commits": {}}
        tree = {".gitattributes": self.hub._entry(".gitattributes", GITATTRIBUTES)}
        repo["refs"]["main"] = self.hub._new_commit(repo, None, tree, "initial commit")
        self.hub.repos[repo_id] = repo
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def create_branch(self, body, query, repo, branch):
        user = self._user(required=True)
        record = self.hub._repo(repo, user)
        if branch in record["refs"]:
            raise HubError(409, f"Reference refs/heads/{branch} already exists")
        start = (json.loads(body) if body else {}).get("startingPoint") or "main"
        record["refs"][branch] = self.hub._commit(record, start)[0]
        self._json({})

    def whoami(self, body, query):
        user = self._user(required=True)
        self._json({"type": "user", "name": user, "auth": {"type": "access_token", "accessToken": {"role": "write"}}})

    def validate_yaml(self, body, query):
        import yaml

        content = json.loads(body)["content"]
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.DOTALL)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as error:
            return self._json({"errors": [{"message": f"Invalid YAML: {error}"}], "warnings": []}, 400)
        if not isinstance(metadata, dict):
            return self._json({"errors": [{"message": "Metadata must be a mapping"}], "warnings": []}, 400)
        self._json({"errors": [], "warnings": []})

    # ---- upload -------------------------------------------------------------------------------------------------

    def preupload(self, body, query, repo, revision):
        record = self.hub._repo(repo, self._user(required=True))
        oid, commit = self.hub._commit(record, revision)
        files = []
        for item in json.loads(body)["files"]:
            lfs = _is_lfs(item["path"], item["size"])
            existing = commit["tree"].get(item["path"])  # its oid lets the client skip unchanged files
            remote_oid = None if existing is None else existing["sha256"] if existing["lfs"] else existing["git_oid"]
            mode = "lfs" if lfs else "regular"
            files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": remote_oid})
        self._json({"files": files, "commitOid": oid})

    def lfs_batch(self, body, query, repo):
        user = self._user(required=True)
        self.hub._repo(repo, user)
        payload = json.loads(body)
        if payload.get("operation") != "upload":
            raise HubError(400, "The stand-in Hub's LFS batch API takes uploads only")
        objects = []
        for item in payload["objects"]:
            answer = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if not (self.hub.objects / item["oid"]).exists():
                base = f"{self.hub.url}/lfs-objects/{item['oid']}/{item['size']}"
                answer["actions"] = {"upload": {"href": base}, "verify": {"href": f"{base}/verify"}}
            objects.append(answer)
        self._json({"transfer": "basic", "objects": objects})

    def lfs_upload(self, body, query, oid, size):
        if hashlib.sha256(body).hexdigest() != oid or len(body) != int(size):
            raise HubError(400, f"Uploaded content does not match oid {oid} / size {size}")
        self.hub._store(body)
        self._send(200)

    def lfs_verify(self, body, query, oid, size):
        self._user(required=True)
        stored = self.hub.objects / oid
        if not stored.exists() or stored.stat().st_size != int(size):
            raise HubError(404, f"LFS object {oid} not uploaded")
        self._json({})

    def commit(self, body, query, repo, revision):
        user = self._user(required=True)
        record = self.hub._repo(repo, user)
        parent, current = self.hub._commit(record, revision)
        if revision not in record["refs"]:
            raise HubError(400, f"Can only commit to a branch, not {revision}", "RevisionNotFound")
        tree = dict(current["tree"])
        summary = ""
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value["summary"]
                if value.get("parentCommit") and value["parentCommit"] != parent:
                    raise HubError(412, "A commit has happened since the parent commit")
            elif key == "file":
                tree[value["path"]] = self.hub._entry(value["path"], base64.b64decode(value["content"]))
            elif key == "lfsFile":
                stored = self.hub.objects / value["oid"]
                if not stored.exists():
                    raise HubError(400, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                tree[value["path"]] = self.hub._entry(value["path"], stored.read_bytes())
            elif key == "deletedFile":
                tree.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                tree = {p: e for p, e in tree.items() if not p.startswith(prefix)}
            else:
                raise HubError(400, f"Unknown commit operation {key}")
        oid = self.hub._new_commit(record, parent, tree, summary)
        record["refs"][revision] = oid
        self._json({"commitUrl": f"{self.hub.url}/{repo}/commit/{oid}", "commitOid": oid, "success": True})

    # ---- download -----------------------------------------------------------------------------------------------

    def model_info(self, body, query, repo, revision="main"):
        record = self.hub._repo(repo, self._user(required=False))
        oid, commit = self.hub._commit(record, revision)
        self._json(
            {
                "_id": repo,
                "id": repo,
                "modelId": repo,
                "author": repo.split("/")[0],
                "sha": oid,
                "private": record["private"],
                "gated": False,
                "disabled": False,
                "tags": [],
                "siblings": [{"rfilename": path} for path in sorted(commit["tree"])],
            }
        )

    def _tree_item(self, path: str, entry: dict) -> dict:
        item = {"type": "file", "oid": entry["git_oid"], "size": entry["size"], "path": path}
        if entry["lfs"]:
            item["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": 134}
        return item

    def tree(self, body, query, repo, revision, path=None):
        tree = self.hub._commit(self.hub._repo(repo, self._user(required=False)), revision)[1]["tree"]
        path = path or ""
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in tree):
            raise HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        items, folders = [], set()
        for file_path, entry in sorted(tree.items()):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/", 1)[0])
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                folders.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
            items.append(self._tree_item(file_path, entry))
        items += [{"type": "directory", "oid": _git_blob_sha1(f.encode()), "size": 0, "path": f} for f in folders]
        self._json(items)

    def paths_info(self, body, query, repo, revision):
        tree = self.hub._commit(self.hub._repo(repo, self._user(required=False)), revision)[1]["tree"]
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body).get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        paths = [paths] if isinstance(paths, str) else paths
        self._json([self._tree_item(p, tree[p]) for p in paths if p in tree])

    def resolve(self, body, query, repo, revision, path):
        oid, commit = self.hub._commit(self.hub._repo(repo, self._user(required=False)), revision)
        entry = commit["tree"].get(path)
        headers = {"X-Repo-Commit": oid}
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        etag = entry["sha256"] if entry["lfs"] else entry["git_oid"]
        headers.update({"ETag": f'"{etag}"', "Accept-Ranges": "bytes"})
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": str(entry["size"])})
        data = b"" if self.command == "HEAD" else (self.hub.objects / entry["sha256"]).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(entry["size"]))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


_REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [
    ("POST", r"/api/repos/create", _Handler.create_repo),
    ("GET", r"/api/whoami-v2", _Handler.whoami),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
    ("POST", rf"/api/models/{_REPO}/branch/(?P<branch>.+)", _Handler.create_branch),
    ("POST", rf"/api/models/{_REPO}/preupload/(?P<revision>.+)", _Handler.preupload),
    ("POST", rf"/api/models/{_REPO}/commit/(?P<revision>.+)", _Handler.commit),
    ("POST", rf"/{_REPO}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
    ("PUT", r"/lfs-objects/(?P<oid>[0-9a-f]{64})/(?P<size>\d+)", _Handler.lfs_upload),
    ("POST", r"/lfs-objects/(?P<oid>[0-9a-f]{64})/(?P<size>\d+)/verify", _Handler.lfs_verify),
    ("GET", rf"/api/models/{_REPO}", _Handler.model_info),
    ("GET", rf"/api/models/{_REPO}/revision/(?P<revision>[^/]+)", _Handler.model_info),
    ("GET", rf"/api/models/{_REPO}/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?", _Handler.tree),
    ("POST", rf"/api/models/{_REPO}/paths-info/(?P<revision>[^/]+)", _Handler.paths_info),
    ("GET", rf"/{_REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)", _Handler.resolve),
    ("HEAD", rf"/{_REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)", _Handler.resolve),
]
