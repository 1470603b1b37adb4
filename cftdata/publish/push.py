"""Publish a finished build to the Hugging Face Hub as a dataset repository (optionally a named config).

:func:`push_build` uploads, in one commit:

* the data files, under ``data/`` (default config) or ``NAME/`` (``config=NAME``);
* the dataset card ``README.md``: the build's card merged into the card already in the repository, so
  the other configs stay listed (:mod:`cftdata.publish.cardmerge`);
* the manifest, secrets masked, as ``cftdata_manifest.json`` (or ``NAME/cftdata_manifest.json``);
* with ``include_rejects``, ``rejects.parquet`` (or ``NAME/rejects.parquet``).

Data files of the same config left over from an earlier push (more shards then) are deleted in the same
commit. The commit names the revision it was prepared from (``parent_commit``), so a concurrent push of
another config cannot be lost: on a conflict the card is merged again and the commit retried.

The local build is only read. Any failure raises :class:`PushError` (a one-paragraph
:class:`~cftdata.errors.CftdataError`) saying what failed and the exact command to rerun; its exit code
is 2 for authentication and other user errors, 1 for network failures, conflicts and server errors.

``huggingface_hub`` is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cftdata.errors import CftdataError

DEFAULT_CONFIG = "default"
MANIFEST_NAME = "cftdata_manifest.json"
REJECTS_NAME = "rejects.parquet"
_REPO_RE = re.compile(r"^(?!.*(?:--|\.\.))[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9_][\w.\-]{0,95}(?<![.\-])$")
_CONFIG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
_RESERVED_CONFIG_DIRS = {"data"}
_MAX_ATTEMPTS = 3


class PushError(CftdataError):
    """Publishing failed; the local build is intact. ``exit_code`` is 2 for auth/user errors, 1 otherwise."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PushInputError(CftdataError, ValueError):
    """A repository id, config name or build folder that cannot be published (also a ValueError, so a pydantic
    validator can use the checks below)."""


def check_repo_id(repo: str) -> str:
    """``org/name`` as the Hub accepts it (letters, digits, ``-_.``; no ``--``/``..``; at most 96 each)."""
    if not isinstance(repo, str) or not _REPO_RE.match(repo) or repo.endswith(".git"):
        raise PushInputError(
            f"Hub repository {repo!r} is not a valid dataset id: use ORG/NAME (or USER/NAME) made of letters, "
            "digits, '-', '_' and '.', e.g. --repo my-org/webinstruct-cft."
        )
    return repo


def check_config_name(config: str | None) -> str | None:
    """A config name usable as a folder and a ``config_name`` (``default`` means no named config)."""
    if config is None or config == DEFAULT_CONFIG:
        return None
    if not _CONFIG_RE.match(config) or config in _RESERVED_CONFIG_DIRS:
        raise PushInputError(
            f"Config name {config!r} cannot be used: it becomes the folder of the data files, so use letters, "
            "digits, '.', '_' and '-' (starting with a letter or digit, at most 64 characters, not 'data'), "
            "e.g. --config WebInstruct-CFT-4K."
        )
    return config


# ---------------------------------------------------------------------------------------------
# the build and the layout in the repository


@dataclass
class LocalBuild:
    """A finished build folder: its manifest, data files and rejects file."""

    path: Path
    manifest: dict[str, Any]
    data_files: list[Path]
    rejects: Path | None


def load_build(build_dir: str | Path) -> LocalBuild:
    """Read and check a build folder (``manifest.json`` of a complete build and its ``data/*.parquet``)."""
    path = Path(build_dir)
    mpath = path / "manifest.json"
    if not path.is_dir():
        raise PushInputError(f"Build folder {path} does not exist: give the output folder of `cftdata build` "
                             "(outputs/<recipe name> by default).")
    if not mpath.is_file():
        raise PushInputError(f"{path} is not a finished build: it has no manifest.json (a build writes it when it "
                             "completes; rerun `cftdata build` to finish it).")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise PushInputError(f"{mpath} is not valid JSON ({e}); rebuild the dataset.") from None
    if not isinstance(manifest, dict) or "recipe" not in manifest or "rows_out" not in manifest:
        raise PushInputError(f"{mpath} is not a cftdata manifest (no recipe/rows_out); rebuild the dataset.")
    if manifest.get("status", "complete") != "complete":
        raise PushInputError(f"The build in {path} is not complete (status {manifest.get('status')!r}); "
                             "finish it with `cftdata build` first.")
    data = sorted((path / "data").glob("train-*.parquet"))
    listed = [f for f in manifest.get("files", []) if f.startswith("data/")]
    missing = [f for f in listed if not (path / f).is_file()]
    if missing or not data:
        what = ", ".join(missing) if missing else "data/train-*.parquet"
        raise PushInputError(f"The build in {path} is missing its data files ({what}); rebuild the dataset.")
    rejects = path / REJECTS_NAME
    return LocalBuild(path, manifest, data, rejects if rejects.is_file() else None)


@dataclass(frozen=True)
class Layout:
    """Where one config's files go in the repository."""

    config: str | None

    @property
    def name(self) -> str:
        return self.config or DEFAULT_CONFIG

    @property
    def data_dir(self) -> str:
        return self.config or "data"

    @property
    def manifest_path(self) -> str:
        return f"{self.config}/{MANIFEST_NAME}" if self.config else MANIFEST_NAME

    @property
    def rejects_path(self) -> str:
        return f"{self.config}/{REJECTS_NAME}" if self.config else REJECTS_NAME

    def owns(self, path: str) -> bool:
        """True for a repository file this config's pushes write (data shards, manifest, rejects)."""
        folder, _, name = path.rpartition("/")
        if path in (self.manifest_path, self.rejects_path):
            return True
        return folder == self.data_dir and name.startswith("train-") and name.endswith(".parquet")


@dataclass
class PushPlan:
    """The files of one commit (path in repo -> local file or bytes) and the stale paths it deletes."""

    files: dict[str, Path | bytes]
    delete: list[str] = field(default_factory=list)
    card_merged: bool = False
    message: str = ""


def published_manifest(build: LocalBuild, repo: str, layout: Layout, revision: str | None,
                       secrets: tuple[str, ...] = ()) -> bytes:
    """The manifest as uploaded: secrets masked, plus where it was published."""
    from cftdata.publish.redact import known_secrets, redact, redact_text

    values = known_secrets(build.manifest, secrets)
    manifest = redact(build.manifest, values)
    manifest["published"] = {
        "repo": repo,
        "config": layout.name,
        "revision": revision or "main",
        "data_files": f"{layout.data_dir}/train-*.parquet",
        "files": [f"{layout.data_dir}/{p.name}" for p in build.data_files],
    }
    return redact_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", values).encode("utf-8")


def make_plan(build: LocalBuild, repo: str, config: str | None, *, revision: str | None = None,
              include_rejects: bool = False, existing_card: str | None = None,
              remote_files: list[str] | tuple[str, ...] = (), secrets: tuple[str, ...] = ()) -> PushPlan:
    """What one push uploads and deletes, given the repository's current card and file list."""
    from cftdata.card import render_card
    from cftdata.publish.cardmerge import CardError, merge_card

    layout = Layout(config)
    files: dict[str, Path | bytes] = {f"{layout.data_dir}/{p.name}": p for p in build.data_files}
    if include_rejects:
        if build.rejects is None:
            raise PushInputError(f"--include-rejects: the build in {build.path} has no {REJECTS_NAME}.")
        files[layout.rejects_path] = build.rejects
    files[layout.manifest_path] = published_manifest(build, repo, layout, revision, secrets)
    card = render_card(build.manifest, repo_id=repo, config=config, secrets=secrets)
    try:
        merged = merge_card(existing_card, card, layout.name)
    except CardError as e:
        raise PushInputError(f"Cannot merge the dataset card into {repo}'s README.md: {e}. Fix the README on "
                             "the Hub (or delete it) and push again.") from None
    files["README.md"] = merged.encode("utf-8")
    delete = sorted(p for p in remote_files if layout.owns(p) and p not in files)
    rows = build.manifest.get("rows_out")
    what = f"config {layout.name}" if config else "the default config"
    return PushPlan(files, delete, existing_card is not None,
                    f"cftdata: {build.manifest['recipe']['name']} as {what} ({rows} rows)")


def write_plan(plan: PushPlan, out_dir: str | Path) -> list[Path]:
    """Write the files of a plan under ``out_dir`` at their repository paths (what ``--dry-run`` does)."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PushInputError(f"--dry-run {out}: the folder must be new or empty (it receives exactly the files "
                             "that would be uploaded).")
    written = []
    for rel, content in plan.files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_bytes(content.read_bytes())
        written.append(target)
    return written


# ---------------------------------------------------------------------------------------------
# talking to the Hub


@dataclass
class PushResult:
    """What a push did (or, with ``dry_run_dir``, would do)."""

    repo: str
    config: str
    revision: str
    url: str
    files: list[str]
    deleted: list[str]
    commit_oid: str | None = None
    commit_url: str | None = None
    unchanged: bool = False
    card_merged: bool = False
    dry_run_dir: Path | None = None


def rerun_command(build_dir: str | Path, repo: str, config: str | None = None, private: bool = False,
                  revision: str | None = None, include_rejects: bool = False) -> str:
    """The ``cftdata push`` command line that repeats a push."""
    parts = ["cftdata", "push", str(build_dir), "--repo", repo]
    if config:
        parts += ["--config", config]
    if private:
        parts.append("--private")
    if revision:
        parts += ["--revision", revision]
    if include_rejects:
        parts.append("--include-rejects")
    return " ".join(shlex.quote(p) for p in parts)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _is_network_error(exc: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return True
    if isinstance(exc, HfHubHTTPError):
        return False
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        mod = type(exc).__module__ or ""
        if mod.split(".")[0] in ("httpx", "httpx2", "httpcore", "h11", "requests", "urllib3", "ssl", "socket"):
            return True
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain_failure(exc: BaseException, *, build_dir: str | Path, repo: str, endpoint: str, rerun: str,
                    token: str | None) -> PushError | None:
    """The :class:`PushError` for a publishing failure (None for an exception that is a bug, not a failure)."""
    from huggingface_hub.errors import HfHubHTTPError

    from cftdata.publish.redact import redact_text

    status = _status(exc)
    detail = _one_line(getattr(exc, "server_message", None) or exc)
    code = 2
    if isinstance(exc, HfHubHTTPError) or status is not None:
        if status == 401:
            what = (f"the Hub refused the token (HTTP 401: {detail}); set a valid write token in HF_TOKEN or log in "
                    "with `hf auth login`")
        elif status == 403:
            what = (f"the token may not write to {repo} (HTTP 403: {detail}); use a token with write access to "
                    "that namespace (a fine-grained token needs 'write' on the organization)")
        elif status == 404:
            what = (f"the repository or revision was not found (HTTP 404: {detail}); check --repo and --revision, "
                    "and that the token can see the repository")
        elif status in (409, 412):
            code = 1
            what = (f"the repository changed while pushing and the commit conflicted (HTTP {status}: {detail}), "
                    f"even after {_MAX_ATTEMPTS} attempts; wait for the other push to finish")
        elif status == 400 or status == 422:
            what = f"the Hub rejected the upload (HTTP {status}: {detail})"
        elif status == 429:
            code = 1
            what = f"the Hub rate-limited the upload (HTTP 429: {detail}); wait a little"
        else:
            code = 1
            what = f"the Hub answered HTTP {status} ({detail})"
    elif _is_network_error(exc):
        code = 1
        what = f"the Hub at {endpoint} could not be reached ({type(exc).__name__}: {detail}); check the network"
    elif isinstance(exc, ValueError) and "metadata" in str(exc).lower():
        what = f"the Hub rejected the dataset card's metadata ({detail})"
    else:
        return None
    msg = (f"Publishing {build_dir} to {repo} failed: {what}. The local build in {build_dir} is intact "
           f"(nothing was published). Rerun with: {rerun}")
    return PushError(redact_text(msg, [token] if token else []), code)


def _fetch_card(api: Any, repo: str, revision: str, token: str | bool | None, tmp: Path) -> str | None:
    """The repository's README.md at ``revision`` (None when it has none)."""
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        path = api.hf_hub_download(repo, "README.md", repo_type="dataset", revision=revision, token=token,
                                   cache_dir=str(tmp))
    except LocalEntryNotFoundError as e:  # network failure with nothing cached: a real failure
        raise (e.__cause__ or e) from None
    except EntryNotFoundError:
        return None
    return Path(path).read_text(encoding="utf-8")


def _resolve_token(token: str | None) -> str | None:
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def dry_run(build_dir: str | Path, repo: str, out_dir: str | Path, config: str | None = None,
            revision: str | None = None, token: str | None = None, include_rejects: bool = False,
            fetch_existing: bool = True) -> tuple[PushResult, str | None]:
    """Write exactly the files :func:`push_build` would upload into ``out_dir`` (same relative paths); nothing
    is uploaded. The repository's current card is read (when reachable) to merge it as a push would.
    Returns the result and a note when the repository could not be read (the card is then not merged)."""
    repo = check_repo_id(repo)
    config = check_config_name(config)
    build = load_build(build_dir)
    existing, remote, note = None, [], None
    token = _resolve_token(token)
    endpoint = ""
    if fetch_existing:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        api = HfApi(token=token or False, library_name="cftdata")
        endpoint = api.endpoint
        try:
            at = revision or "main"
            try:
                head = api.repo_info(repo, repo_type="dataset", revision=at, token=token or False).sha
            except RevisionNotFoundError:  # a push creates the branch from main
                head = api.repo_info(repo, repo_type="dataset", token=token or False).sha
            at = head or at
            with tempfile.TemporaryDirectory(prefix="cftdata-push-") as tmp:
                existing = _fetch_card(api, repo, at, token or False, Path(tmp))
            remote = api.list_repo_files(repo, repo_type="dataset", revision=at, token=token or False)
        except RepositoryNotFoundError:
            note = f"{repo} does not exist yet (or is not visible with this token): the card is not merged"
        except Exception as e:  # noqa: BLE001 - a dry run reports and goes on with a fresh card
            if _status(e) is None and not _is_network_error(e):
                raise
            note = f"could not read {repo} on the Hub ({_one_line(e, 160)}): the card is not merged"
            existing, remote = None, []
    plan = make_plan(build, repo, config, revision=revision, include_rejects=include_rejects,
                     existing_card=existing, remote_files=remote, secrets=(token,) if token else ())
    write_plan(plan, out_dir)
    url = f"{endpoint or 'https://huggingface.co'}/datasets/{repo}"
    return PushResult(repo, Layout(config).name, revision or "main", url, list(plan.files), plan.delete,
                      card_merged=plan.card_merged, dry_run_dir=Path(out_dir)), note


def push_build(build_dir: str | Path, repo: str, config: str | None = None, private: bool = False,
               revision: str | None = None, token: str | None = None, include_rejects: bool = False) -> PushResult:
    """Publish the build in ``build_dir`` to the Hub dataset ``repo`` (created if needed), as config
    ``config`` (None: the default config), on branch ``revision`` (created from main if needed).

    The token is ``token``, else ``HF_TOKEN``, else the one saved by ``hf auth login``. ``private`` creates a
    new repository as private (and refuses to publish into an existing public one). Raises
    :class:`PushError` when publishing fails; the local build is never modified.
    """
    repo = check_repo_id(repo)
    config = check_config_name(config)
    build = load_build(build_dir)
    if include_rejects and build.rejects is None:
        raise PushInputError(f"--include-rejects: the build in {build_dir} has no {REJECTS_NAME}.")
    rerun = rerun_command(build_dir, repo, config, private, revision, include_rejects)
    token = _resolve_token(token)
    if not token:
        raise PushError(f"Publishing {build_dir} to {repo} needs a Hugging Face token with write access: set "
                        "HF_TOKEN or log in with `hf auth login`. The local build is intact (nothing was "
                        f"published). Rerun with: {rerun}", 2)

    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    from cftdata import __version__

    api = HfApi(token=token, library_name="cftdata", library_version=__version__)
    try:
        api.create_repo(repo, repo_type="dataset", private=True if private else None, exist_ok=True, token=token)
        if private and api.repo_info(repo, repo_type="dataset", token=token).private is False:
            raise PushError(
                f"{repo} already exists and is public, so --private cannot keep this build private. Make the "
                "repository private in its settings on the Hub (or drop --private to publish publicly). The "
                f"local build in {build_dir} is intact (nothing was published). Rerun with: {rerun}", 2)
        if revision and revision != "main":
            api.create_branch(repo, branch=revision, repo_type="dataset", exist_ok=True, token=token)
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            head = api.repo_info(repo, repo_type="dataset", revision=revision, token=token).sha
            at = head or revision or "main"
            with tempfile.TemporaryDirectory(prefix="cftdata-push-") as tmp:
                existing = _fetch_card(api, repo, at, token, Path(tmp))
            remote = api.list_repo_files(repo, repo_type="dataset", revision=at, token=token)
            plan = make_plan(build, repo, config, revision=revision, include_rejects=include_rejects,
                             existing_card=existing, remote_files=remote, secrets=(token,))
            ops: list[Any] = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=c if isinstance(c, bytes) else str(c))
                              for p, c in plan.files.items()]
            ops += [CommitOperationDelete(path_in_repo=p) for p in plan.delete]
            try:
                info = api.create_commit(repo, ops, commit_message=plan.message, repo_type="dataset",
                                         revision=revision, parent_commit=head, token=token)
            except Exception as e:
                if _status(e) in (409, 412) and attempt < _MAX_ATTEMPTS:
                    continue  # someone pushed meanwhile: merge their card again and retry
                raise
            break
    except CftdataError:
        raise
    except Exception as e:
        err = explain_failure(e, build_dir=build_dir, repo=repo, endpoint=api.endpoint, rerun=rerun, token=token)
        if err is None:
            raise
        raise err from None
    return PushResult(
        repo=repo, config=Layout(config).name, revision=revision or "main",
        url=f"{api.endpoint}/datasets/{repo}", files=list(plan.files), deleted=plan.delete,
        commit_oid=info.oid, commit_url=str(info), unchanged=bool(head) and info.oid == head,
        card_merged=plan.card_merged,
    )
