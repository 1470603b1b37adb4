"""A loopback fake of the few Hugging Face Hub endpoints that publishing and loading a dataset use.

The Hub cannot be reached from tests, so this server implements, on 127.0.0.1 (starlette app, uvicorn
in a background thread, ephemeral port), the wire formats that ``huggingface_hub`` (``create_repo``,
``create_commit``/``upload_folder``, ``create_branch``, ``repo_info``, ``list_repo_files``,
``hf_hub_download``, ``HfFileSystem``) and ``datasets.load_dataset("<repo>", "<config>")`` send::

    with HubServer(tokens={"tok-w": "alice"}, orgs={"alice": {"cft-org"}}) as hub:
        hub.url                      # "http://127.0.0.1:<port>": HF_ENDPOINT of a client process
        hub.files("cft-org/x")       # {path: bytes} at main
        hub.repo("cft-org/x")        # Repo: private, branches, commits

Endpoints (``{t}`` is ``datasets``/``models``/``spaces``, ``{rev}`` URL-quoted):

==========================================================  ===========================================
``POST /api/repos/create``                                  ``{name, organization, type, visibility}``;
                                                            409 when it exists; first commit holds
                                                            ``.gitattributes`` (``*.parquet`` is LFS)
``GET /api/{t}/{ns}/{name}[/revision/{rev}]``               repo info (sha, private, siblings, cardData)
``POST /api/validate-yaml``                                 card metadata check (400 + ``errors``)
``POST /api/{t}/{ns}/{name}/preupload/{rev}``               ``uploadMode`` lfs/regular, remote ``oid``
``POST /{t}/{ns}/{name}.git/info/lfs/objects/batch``        LFS batch API (basic transfer)
``PUT /_lfs/{oid}``, ``POST /_lfs/{oid}/verify``            the "S3" upload and its verify step
``POST /api/{t}/{ns}/{name}/commit/{rev}``                  ndjson: header (``parentCommit`` -> 412 on
                                                            mismatch), file (base64), lfsFile,
                                                            deletedFile, deletedFolder
``POST /api/{t}/{ns}/{name}/branch/{branch}``               create a branch (``startingPoint``)
``GET /api/{t}/{ns}/{name}/refs``, ``.../commits/{rev}``    branches; commit log
``GET /api/{t}/{ns}/{name}/tree/{rev}[/{path}]``            ``recursive``, ``expand`` (lastCommit)
``POST /api/{t}/{ns}/{name}/paths-info/{rev}``              form ``paths``
``HEAD|GET /[{t}/]{ns}/{name}/resolve/{rev}/{path}``        file bytes, ``X-Repo-Commit``, ``ETag``,
                                                            ``Range`` (206)
``GET /api/whoami-v2``                                      the token's user
==========================================================  ===========================================

Auth is ``Authorization: Bearer <token>``: an unknown token is answered 401 ``Invalid credentials in
Authorization header`` on every endpoint (as the Hub does); writes need a token whose user owns the
namespace (its own name or one of its ``orgs``), else 401 (anonymous) / 403; a private repo is
invisible (404 ``RepoNotFound``, 401 when anonymous) to anyone else. Errors carry the Hub's
``X-Error-Code`` / ``X-Error-Message`` headers. Blobs are stored by sha256 in a temporary folder.
``requests`` logs ``(method, path, status)``; ``unhandled`` lists requests no route matched;
``fail_next[(method, kind)] = [status, ...]`` answers the next such requests with those statuses
(``kind``: create, info, preupload, lfs-batch, lfs-upload, commit, tree, resolve, branch).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HOST = "127.0.0.1"
GITATTRIBUTES = (b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.arrow filter=lfs diff=lfs merge=lfs -text\n"
                 b"*.bin filter=lfs diff=lfs merge=lfs -text\n")
LFS_SUFFIXES = (".parquet", ".arrow", ".bin")
REGULAR_MAX = 10 * 1024 * 1024


def git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class FileEntry:
    """One file of a commit: content by sha256; ``oid`` is the git blob id (of the pointer for LFS files)."""

    size: int
    sha256: str
    lfs: bool
    oid: str
    commit: str = ""

    def tree_item(self, path: str, commits: dict[str, Commit] | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "file", "oid": self.oid, "size": self.size, "path": path}
        if self.lfs:
            item["lfs"] = {"oid": self.sha256, "size": self.size,
                           "pointerSize": len(lfs_pointer(self.sha256, self.size))}
        if commits is not None and self.commit in commits:
            c = commits[self.commit]
            item["lastCommit"] = {"id": c.oid, "title": c.title, "date": c.date}
        return item


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    author: str
    files: dict[str, FileEntry]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def log(self, branch: str = "main") -> list[Commit]:
        """Commits reachable from ``branch``, newest first."""
        out, oid = [], self.branches.get(branch)
        while oid:
            c = self.commits[oid]
            out.append(c)
            oid = c.parent
        return out


class HubError(Exception):
    """An error answer: status, ``X-Error-Message``, optional ``X-Error-Code`` and extra body fields."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class HubServer:
    """The fake Hub (see the module doc)."""

    def __init__(self, tokens: dict[str, str] | None = None, orgs: dict[str, set[str]] | None = None) -> None:
        self.tokens = dict(tokens or {"hf_test_write_token": "tester"})
        self.orgs = {u: set(v) for u, v in (orgs or {}).items()}
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.fail_next: dict[tuple[str, str], list[int]] = {}
        self._root = Path(tempfile.mkdtemp(prefix="hub-server-"))
        self._blobs = self._root / "blobs"
        self._blobs.mkdir()
        self._counter = itertools.count(1)
        self.lock = threading.Lock()
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[Route("/{rest:path}", self._dispatch,
                                           methods=["GET", "HEAD", "POST", "PUT", "DELETE"])])

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> HubServer:
        config = uvicorn.Config(self.app, host=HOST, port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="hub-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the hub test server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection helpers for tests --------------------------------------------------------

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        """Every file of ``repo_id`` at ``revision`` (branch or commit), as bytes."""
        repo = self.repo(repo_id, repo_type)
        commit = repo.commits[repo.branches.get(revision, revision)]
        return {p: (self._blobs / e.sha256).read_bytes() for p, e in sorted(commit.files.items())}

    # -- plumbing ----------------------------------------------------------------------------

    def _store(self, content: bytes) -> str:
        sha = hashlib.sha256(content).hexdigest()
        path = self._blobs / sha
        if not path.exists():
            path.write_bytes(content)
        return sha

    def _user(self, request: Request) -> str | None:
        auth = request.headers.get("authorization")
        if not auth:
            return None
        token = auth.split(" ", 1)[1].strip() if auth.lower().startswith("bearer ") else auth.strip()
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def _namespaces(self, user: str | None) -> set[str]:
        return set() if user is None else {user, *self.orgs.get(user, set())}

    def _find(self, repo_type: str, repo_id: str, user: str | None) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and repo_id.split("/")[0] not in self._namespaces(user)):
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def _writable(self, repo_type: str, repo_id: str, user: str | None) -> Repo:
        repo = self._find(repo_type, repo_id, user)
        self._check_write(repo_id, user)
        return repo

    def _check_write(self, repo_id: str, user: str | None) -> None:
        if user is None:
            raise HubError(401, "You must be authenticated to write")
        if repo_id.split("/")[0] not in self._namespaces(user):
            raise HubError(403, f"You don't have the rights to write to {repo_id}")

    def _commit_of(self, repo: Repo, rev: str) -> Commit:
        oid = repo.branches.get(rev)
        if oid is None and re.fullmatch(r"[0-9a-f]{40}", rev) and rev in repo.commits:
            oid = rev
        if oid is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return repo.commits[oid]

    def _new_commit(self, repo: Repo, branch: str, parent: str | None, title: str, message: str, author: str,
                    files: dict[str, FileEntry]) -> Commit:
        n = next(self._counter)
        oid = hashlib.sha1(f"{repo.repo_id}|{parent}|{title}|{n}|{sorted(files)}".encode()).hexdigest()
        for e in files.values():
            if not e.commit:
                e.commit = oid
        c = Commit(oid, parent, title, message, _now(), author, files)
        repo.commits[oid] = c
        repo.branches[branch] = oid
        return c

    def _entry(self, content: bytes, lfs: bool) -> FileEntry:
        sha = self._store(content)
        oid = git_blob_oid(lfs_pointer(sha, len(content))) if lfs else git_blob_oid(content)
        return FileEntry(len(content), sha, lfs, oid)

    def _card_data(self, commit: Commit) -> dict[str, Any]:
        entry = commit.files.get("README.md")
        if entry is None:
            return {}
        text = (self._blobs / entry.sha256).read_text(encoding="utf-8")
        m = re.match(r"\A---\n(.*?)\n---\n", text, re.DOTALL)
        try:
            return (yaml.safe_load(m.group(1)) or {}) if m else {}
        except yaml.YAMLError:
            return {}

    # -- dispatch ----------------------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        path = raw.decode("latin-1").split("?", 1)[0]
        method = request.method
        try:
            user = self._user(request)
            response = await self._route(method, path, request, user)
        except HubError as e:
            headers = {"X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
            response = JSONResponse({"error": e.message, **e.extra}, status_code=e.status, headers=headers)
        self.requests.append((method, path, response.status_code))
        return response

    def _fault(self, method: str, kind: str) -> None:
        queue = self.fail_next.get((method, kind))
        if queue:
            status = queue.pop(0)
            raise HubError(status, f"injected failure {status} for {method} {kind}")

    async def _route(self, method: str, path: str, request: Request, user: str | None) -> Response:
        seg = [unquote(s) for s in path.strip("/").split("/")]
        if method == "POST" and path == "/api/repos/create":
            self._fault(method, "create")
            return await self._create_repo(request, user)
        if method == "POST" and path == "/api/validate-yaml":
            return await self._validate_yaml(request)
        if method == "GET" and path == "/api/whoami-v2":
            if user is None:
                raise HubError(401, "Invalid credentials in Authorization header")
            return JSONResponse({"type": "user", "name": user, "orgs": [{"name": o} for o in sorted(self.orgs.get(user, ()))],
                                 "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if seg[:1] == ["_lfs"] and len(seg) >= 2:
            if method == "PUT" and len(seg) == 2:
                self._fault(method, "lfs-upload")
                body = await request.body()
                if hashlib.sha256(body).hexdigest() != seg[1]:
                    raise HubError(400, "sha256 mismatch")
                self._store(body)
                return Response(status_code=200)
            if method == "POST" and len(seg) == 3 and seg[2] == "verify":
                if not (self._blobs / seg[1]).exists():
                    raise HubError(404, "object not found")
                return JSONResponse({"success": True})
        # /api/{t}s/{ns}/{name}/...
        if len(seg) >= 4 and seg[0] == "api" and seg[1] in ("datasets", "models", "spaces"):
            repo_type, repo_id, rest = seg[1][:-1], f"{seg[2]}/{seg[3]}", seg[4:]
            return await self._api_repo(method, repo_type, repo_id, rest, request, user)
        # /{t}s/{ns}/{name}.git/info/lfs/objects/batch and /{t}s/{ns}/{name}/resolve/{rev}/{path}
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type, seg = seg[0][:-1], seg[1:]
        if len(seg) == 6 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"] \
                and method == "POST":
            self._fault(method, "lfs-batch")
            return await self._lfs_batch(repo_type, f"{seg[0]}/{seg[1][:-4]}", request, user)
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            self._fault(method, "resolve")
            return self._resolve(method, repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]), request, user)
        self.unhandled.append((method, path))
        raise HubError(404, f"no such endpoint in the fake hub: {method} {path}")

    # -- handlers ----------------------------------------------------------------------------

    async def _create_repo(self, request: Request, user: str | None) -> Response:
        payload = await request.json()
        repo_type = payload.get("type") or "model"
        ns = payload.get("organization") or user
        repo_id = f"{ns}/{payload['name']}"
        self._check_write(repo_id, user)
        key = (repo_type, repo_id)
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.url}/{prefix}{repo_id}"
        if key in self.repos:
            raise HubError(409, f"You already created this {repo_type} repo", url=url)
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo = Repo(repo_type, repo_id, private, _now())
        self.repos[key] = repo
        self._new_commit(repo, "main", None, "initial commit", "", user or "",
                         {".gitattributes": self._entry(GITATTRIBUTES, False)})
        return JSONResponse({"url": url, "name": repo_id, "id": repo_id})

    async def _validate_yaml(self, request: Request) -> Response:
        payload = await request.json()
        text = payload.get("content", "")
        m = re.match(r"\A---\n(.*?)\n---\n", text, re.DOTALL)
        errors = []
        if m:
            try:
                meta = yaml.safe_load(m.group(1)) or {}
            except yaml.YAMLError as e:
                meta, errors = {}, [f"Invalid YAML: {e}"]
            if not isinstance(meta, dict):
                errors.append("metadata must be a mapping")
                meta = {}
            lic = meta.get("license")
            if lic is not None and not (isinstance(lic, str) or (isinstance(lic, list) and all(isinstance(x, str) for x in lic))):
                errors.append('"license" must be a string or a list of strings')
            for c in meta.get("configs") or []:
                if not isinstance(c, dict) or not isinstance(c.get("config_name"), str) or "data_files" not in c:
                    errors.append(f'"configs" entries need config_name and data_files: {c!r}')
        if errors:
            return JSONResponse({"errors": [{"message": e} for e in errors]}, status_code=400)
        return JSONResponse({"warnings": []})

    async def _api_repo(self, method: str, repo_type: str, repo_id: str, rest: list[str], request: Request,
                        user: str | None) -> Response:
        if method == "GET" and (not rest or (rest[0] == "revision" and len(rest) >= 2)):
            self._fault(method, "info")
            repo = self._find(repo_type, repo_id, user)
            commit = self._commit_of(repo, "/".join(rest[1:]) if rest else "main")
            return JSONResponse({
                "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "author": repo_id.split("/")[0],
                "sha": commit.oid, "lastModified": commit.date, "createdAt": repo.created, "private": repo.private,
                "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
                "cardData": self._card_data(commit),
            })
        if not rest:
            self.unhandled.append((method, f"/api/{repo_type}s/{repo_id}"))
            raise HubError(404, "no such endpoint in the fake hub")
        action, args = rest[0], rest[1:]
        if method == "POST" and action == "preupload" and args:
            self._fault(method, "preupload")
            repo = self._writable(repo_type, repo_id, user)
            commit = self._commit_of(repo, "/".join(args))
            payload = await request.json()
            out = []
            for f in payload.get("files", []):
                lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] > REGULAR_MAX
                existing = commit.files.get(f["path"])
                oid = None
                if existing is not None:
                    oid = existing.sha256 if existing.lfs else existing.oid
                out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                            "oid": oid})
            return JSONResponse({"files": out, "commitOid": commit.oid})
        if method == "POST" and action == "commit" and args:
            self._fault(method, "commit")
            return await self._commit(repo_type, repo_id, "/".join(args), request, user)
        if method == "POST" and action == "branch" and args:
            self._fault(method, "branch")
            repo = self._writable(repo_type, repo_id, user)
            branch = "/".join(args)
            if branch in repo.branches:
                raise HubError(409, "Reference already exists")
            body = await request.body()
            start = (json.loads(body) if body else {}).get("startingPoint") or "main"
            repo.branches[branch] = self._commit_of(repo, start).oid
            return JSONResponse({"success": True})
        if method == "GET" and action == "refs":
            repo = self._find(repo_type, repo_id, user)
            return JSONResponse({"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": o}
                                              for b, o in sorted(repo.branches.items())],
                                 "tags": [], "converts": []})
        if method == "GET" and action == "commits" and args:
            repo = self._find(repo_type, repo_id, user)
            head = self._commit_of(repo, "/".join(args))
            out, oid = [], head.oid
            while oid:
                c = repo.commits[oid]
                out.append({"id": c.oid, "title": c.title, "message": c.message, "date": c.date,
                            "authors": [{"user": c.author}]})
                oid = c.parent
            return JSONResponse(out)
        if method == "GET" and action == "tree" and args:
            self._fault(method, "tree")
            repo = self._find(repo_type, repo_id, user)
            commit = self._commit_of(repo, args[0])
            sub = "/".join(args[1:]).strip("/")
            q = request.query_params
            recursive = q.get("recursive", "false").lower() in ("1", "true")
            expand = q.get("expand", "false").lower() in ("1", "true")
            return JSONResponse(self._tree(repo, commit, sub, recursive, expand))
        if method == "POST" and action == "paths-info" and args:
            repo = self._find(repo_type, repo_id, user)
            commit = self._commit_of(repo, "/".join(args))
            form = parse_qs((await request.body()).decode())
            expand = form.get("expand", ["False"])[0].lower() == "true"
            out = []
            for p in form.get("paths", []):
                p = p.strip("/")
                if p in commit.files:
                    out.append(commit.files[p].tree_item(p, repo.commits if expand else None))
                elif any(f.startswith(p + "/") for f in commit.files) or p == "":
                    out.append(self._folder(commit, p))
            return JSONResponse(out)
        self.unhandled.append((method, f"/api/{repo_type}s/{repo_id}/{'/'.join(rest)}"))
        raise HubError(404, "no such endpoint in the fake hub")

    def _folder(self, commit: Commit, path: str) -> dict[str, Any]:
        return {"type": "directory", "oid": hashlib.sha1(f"{commit.oid}:{path}".encode()).hexdigest(), "path": path}

    def _tree(self, repo: Repo, commit: Commit, sub: str, recursive: bool, expand: bool) -> list[dict[str, Any]]:
        prefix = f"{sub}/" if sub else ""
        under = {p: e for p, e in commit.files.items() if p.startswith(prefix)}
        if sub and not under:
            raise HubError(404, f"{sub} does not exist", "EntryNotFound")
        files, folders = [], set()
        for p, e in sorted(under.items()):
            rel = p[len(prefix):]
            parts = rel.split("/")
            for i in range(1, len(parts)):
                if recursive or i == 1:
                    folders.add(prefix + "/".join(parts[:i]))
            if recursive or len(parts) == 1:
                files.append(e.tree_item(p, repo.commits if expand else None))
        return [self._folder(commit, f) for f in sorted(folders)] + files

    async def _lfs_batch(self, repo_type: str, repo_id: str, request: Request, user: str | None) -> Response:
        self._writable(repo_type, repo_id, user)
        payload = await request.json()
        objects = []
        for obj in payload.get("objects", []):
            item: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not (self._blobs / obj["oid"]).exists():
                item["actions"] = {"upload": {"href": f"{self.url}/_lfs/{obj['oid']}", "header": {}},
                                   "verify": {"href": f"{self.url}/_lfs/{obj['oid']}/verify", "header": {}}}
            objects.append(item)
        return JSONResponse({"transfer": "basic", "objects": objects},
                            headers={"Content-Type": "application/vnd.git-lfs+json"})

    async def _commit(self, repo_type: str, repo_id: str, rev: str, request: Request, user: str | None) -> Response:
        repo = self._writable(repo_type, repo_id, user)
        if request.query_params.get("create_pr"):
            raise HubError(400, "pull requests are not supported by the fake hub")
        if rev not in repo.branches:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        lines = [json.loads(line) for line in (await request.body()).decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the first ndjson line must be the header")
        header = lines[0]["value"]
        head = repo.commits[repo.branches[rev]]
        parent = header.get("parentCommit")
        if parent and not head.oid.startswith(parent):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for line in lines[1:]:
            key, v = line["key"], line["value"]
            if key == "file":
                files[v["path"]] = self._entry(base64.b64decode(v["content"]), False)
            elif key == "lfsFile":
                if not (self._blobs / v["oid"]).exists():
                    raise HubError(400, f"LFS object {v['oid']} for {v['path']} was never uploaded")
                files[v["path"]] = FileEntry(v["size"], v["oid"], True,
                                             git_blob_oid(lfs_pointer(v["oid"], v["size"])))
            elif key == "deletedFile":
                if v["path"] not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {v['path']}", "EntryNotFound")
                del files[v["path"]]
            elif key == "deletedFolder":
                prefix = v["path"].rstrip("/") + "/"
                files = {p: e for p, e in files.items() if not p.startswith(prefix)}
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        commit = self._new_commit(repo, rev, head.oid, header.get("summary", ""), header.get("description", ""),
                                  user or "", files)
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return JSONResponse({"success": True, "commitOid": commit.oid, "pullRequestUrl": None,
                             "commitUrl": f"{self.url}/{prefix}{repo_id}/commit/{commit.oid}"})

    def _resolve(self, method: str, repo_type: str, repo_id: str, rev: str, path: str, request: Request,
                 user: str | None) -> Response:
        repo = self._find(repo_type, repo_id, user)
        commit = self._commit_of(repo, rev)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound")
        data = (self._blobs / entry.sha256).read_bytes()
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{entry.sha256 if entry.lfs else entry.oid}"',
                   "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        status = 200
        rng = request.headers.get("range")
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m:
                raise HubError(416, "bad range")
            a, b = m.groups()
            if a == "":
                start, end = max(0, len(data) - int(b)), len(data) - 1
            else:
                start, end = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
            if start >= len(data) and len(data) > 0:
                return Response(status_code=416, headers={"Content-Range": f"bytes */{len(data)}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        if method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return Response(content=b"", status_code=status, headers=headers)
        return Response(content=data, status_code=status, headers=headers)
