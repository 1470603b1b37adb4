"""Publishing builds to the Hub (`cftdata push`, cftdata.publish) against a loopback fake of the Hub.

huggingface_hub reads HF_ENDPOINT (and HF_HUB_DISABLE_XET) when it is imported, so every client runs in
a subprocess whose environment points at tests/servers/hub_server.py on 127.0.0.1: the real CLI for
pushes, and a small script for `datasets.load_dataset("<repo>", "<config>")` round trips. Builds are
written directly (parquet shards + a manifest like the pipeline's), so no model runs here.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from cftdata.card import render_card
from cftdata.publish.cardmerge import join_card, merge_card, split_card
from cftdata.publish.push import (
    Layout,
    PushInputError,
    check_config_name,
    check_repo_id,
    dry_run,
    load_build,
    make_plan,
    published_manifest,
    push_build,
)
from cftdata.recipe import validate_recipe
from tests.conftest import ROOT
from tests.servers.hub_server import HubServer

TOKEN = "hf_testwritetoken0123456789abcdef"
SECRET = "sk-proj-SECRETSECRETSECRET0123456789"
ORG = "cft-org"


# ---------------------------------------------------------------------------------------------
# helpers


def _rows(n: int, tag: str) -> list[dict[str, Any]]:
    return [{"instruction": "Please critique whether the following solution to the question is correct.",
             "input": f"Question:\nWhat is {i} + {i}? ({tag})\n\nSolution:\n{2 * i}",
             "output": f"Critique:\nThe sum is {2 * i}. Conclusion: right [END]",
             "id": f"{tag}-{i}", "verdict": "right" if i % 3 else "wrong", "critique_input_tokens": 10 + i}
            for i in range(n)]


def make_build(path: Path, name: str, rows: list[dict[str, Any]], *, shards: int = 1, rejects: int = 1) -> Path:
    """A finished build folder like the pipeline writes (data shards, rejects, manifest, README)."""
    recipe = validate_recipe({
        "name": name, "description": f"Test build {name}.",
        "source": {"hub": "TIGER-Lab/WebInstructSub", "corpus": "webinstruct"},
        "respond": {"mode": "existing"},
        "teacher": {"backend": "openai", "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY",
                    "base_url": f"https://user:{SECRET}@proxy.example/v1?key={SECRET}",
                    "params": {"temperature": 0.0, "max_tokens": 1024}, "options": {"api_key": SECRET}},
        "verify": {}, "agreement": {},
    })
    (path / "data").mkdir(parents=True)
    per = -(-len(rows) // shards)
    for i in range(shards):
        pq.write_table(pa.Table.from_pylist(rows[i * per:(i + 1) * per]),
                       path / "data" / f"train-{i:05d}-of-{shards:05d}.parquet")
    pq.write_table(pa.Table.from_pylist([{"id": f"r{i}", "stage": "verify", "reason": "unverifiable"}
                                         for i in range(rejects)]), path / "rejects.parquet")
    n = len(rows)
    manifest = {
        "cftdata_version": "0.1.0", "status": "complete", "created_at": "2026-01-02T03:04:05Z",
        "recipe_file": "recipes/test.yaml", "overrides": [f"teacher.options.api_key={SECRET}"],
        "recipe": recipe.resolved_dict(), "versions": {"datasets": "x"},
        "counts": {"source": {"in": n + rejects, "out": n + rejects, "rejected": 0, "seconds": 0.0},
                   "verify": {"in": n + rejects, "out": n, "rejected": rejects, "seconds": 0.1},
                   "critique": {"in": n, "out": n, "rejected": 0, "seconds": 1.0}},
        "rows_out": n, "rejected": rejects, "rejects_by_reason": {"verify:unverifiable": rejects},
        "stages": {
            "critique": {"prompt": "cft-paper", "backend": "openai", "model": "gpt-4o-mini"},
            "verify": {"answer_rule": "auto", "statuses": {"correct": n - 1, "incorrect": 1}},
            "verdict": {"verdicts": {"right": n - 1, "wrong": 1}, "right_ratio": round((n - 1) / n, 4)},
            "agreement": {"table": {"right/correct": n - 2, "right/incorrect": 1, "wrong/correct": 0,
                                    "wrong/incorrect": 1}, "decided": n, "agreement": round((n - 1) / n, 4),
                          "undecided": 0, "all": {}, "drop_contradictions": False},
        },
        "usage": {"critique": {"requests": n, "cache_hits": 0, "calls_made": n, "input_tokens": 1000,
                               "output_tokens": 500, "input_tokens_from_cache": 0, "output_tokens_from_cache": 0}},
        "cost": {"critique": {"this_run_usd": 0.00045, "total_usd": 0.00045}},
        "seconds": 1.5, "cache": "/tmp/cache",
        "files": [f"data/train-{i:05d}-of-{shards:05d}.parquet" for i in range(shards)] + ["rejects.parquet"],
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (path / "README.md").write_text(render_card(manifest))
    return path


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def local_rows(build: Path) -> list[dict[str, Any]]:
    return [r for f in sorted((build / "data").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def client_env(hub: HubServer, home: Path, token: str | None = TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update({"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(home / "hf-home"),
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "HF_DATASETS_CACHE": str(home / "ds-cache"), "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost", "OPENAI_API_KEY": SECRET})
    if token:
        env["HF_TOKEN"] = token
    return env


def push_cli(hub: HubServer, home: Path, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    """`cftdata push ...` in a subprocess (the standalone module until the lead registers the command)."""
    from cftdata.cli import main

    cmd = ["-m", "cftdata.cli", "push"] if "push" in main.commands else ["-m", "cftdata.publish.commands"]
    return subprocess.run([sys.executable, *cmd, *args], cwd=ROOT, capture_output=True, text=True,
                          env=client_env(hub, home, token), timeout=120)


LOAD_SCRIPT = """
import json, sys
import datasets
datasets.config.USE_PARQUET_EXPORT = False  # no dataset-viewer call: the fake hub is the only host
out = {}
for key, repo, config, anonymous in json.loads(sys.argv[1]):
    try:
        ds = datasets.load_dataset(repo, config, split="train", token=False if anonymous else None,
                                   cache_dir=f"{sys.argv[2]}/{key}")  # no fallback on another query's cache
        out[key] = ds.to_list()
    except Exception as e:
        out[key] = f"error: {type(e).__name__}"
print(json.dumps(out))
"""


def load_from_hub(hub: HubServer, home: Path, queries: list[tuple[str, str, str | None, bool]]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, json.dumps(queries), str(home / "load-cache")], cwd=ROOT, capture_output=True,
                          text=True, env=client_env(hub, home), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hub():
    with HubServer(tokens={TOKEN: "tester"}, orgs={"tester": {ORG}}) as srv:
        yield srv
    assert not srv.unhandled, srv.unhandled


# ---------------------------------------------------------------------------------------------
# the card


def test_card_metadata_is_valid_for_the_hub(tmp_path):
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    build = make_build(tmp_path / "b", "webcft", _rows(5, "a"))
    text = render_card(json.loads((build / "manifest.json").read_text()), repo_id=f"{ORG}/cft", config="cft-4K")
    card = DatasetCard(text)
    assert isinstance(card.data, DatasetCardData)
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0"  # WebInstructSub's license, derived from the corpus
    assert meta["task_categories"] == ["text-generation"] and meta["size_categories"] == ["n<1K"]
    assert meta["pretty_name"] == "cft" and "critique-fine-tuning" in meta["tags"]
    assert meta["configs"] == [{"config_name": "cft-4K",
                                "data_files": [{"split": "train", "path": "cft-4K/train-*.parquet"}]}]
    configs = MetadataConfigs.from_dataset_card_data(card.data)  # what `datasets` reads
    assert configs["cft-4K"]["data_files"] == [{"split": "train", "path": "cft-4K/train-*.parquet"}]
    body = card.text
    for needed in ("TIGER-Lab/WebInstructSub", "`openai:gpt-4o-mini`", '"temperature": 0.0',
                   "Conclusion: right/wrong [END]", "Question: {{ question }}", "| verify | 6 | 5 | 1 |",
                   "right 4 (80.0%)", "80.0%", "| right | 3 | 1 |", "| correct | 4 |", "$0.00045",
                   f'load_dataset("{ORG}/cft", "cft-4K", split="train")', "name: webcft"):
        assert needed in body, needed
    assert SECRET not in text and "sk-proj" not in text
    # The local card (no repo) is valid too and says how to load the folder.
    local = DatasetCard((build / "README.md").read_text())
    assert local.data.to_dict()["configs"][0]["config_name"] == "default"
    assert 'data_dir="data"' in local.text and SECRET not in local.content


def test_merge_keeps_other_configs_and_hand_written_text():
    def card(config, size="n<1K", lic="mit", tags=("cft",)):
        meta = {"license": lic, "tags": list(tags), "size_categories": [size], "pretty_name": "x",
                "configs": [{"config_name": config, "data_files": [{"split": "train", "path": f"{config}/train-*"}]}]}
        return ("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n# x\n\n"
                f"<!-- cftdata:config {config}:start -->\n## {config} v-{size}\n<!-- cftdata:config {config}:end -->\n")

    merged = merge_card(card("A"), card("B", "1K<n<10K", "apache-2.0", ("extra",)), "B")
    merged = merged.replace("# x\n", "# x\n\nHand-written intro.\n")
    merged = merge_card(merged, card("A", "n<1K"), "A")  # re-push A: replaced in place
    meta, body = split_card(merged)
    assert [c["config_name"] for c in meta["configs"]] == ["A", "B"]
    assert meta["license"] == ["mit", "apache-2.0"] and meta["tags"] == ["cft", "extra"]
    assert meta["size_categories"] == ["1K<n<10K"] and meta["pretty_name"] == "x"
    assert "Hand-written intro." in body and body.index("## A") < body.index("## B")
    assert body.count("cftdata:config A:start") == 1 and body.count("cftdata:config B:start") == 1
    # A card without metadata or markers (written by hand) keeps its text; ours is appended.
    merged = merge_card("# Mine\n\nNotes.\n", card("A"), "A")
    assert merged.startswith("---\n") and "Notes." in merged and "## A" in merged
    assert merge_card(None, card("A"), "A") == card("A")
    # features recorded for the pushed config by another tool describe the old data: dropped; others kept
    meta, body = split_card(card("B"))
    meta["dataset_info"] = [{"config_name": "A", "features": []}, {"config_name": "B", "features": []}]
    meta, _ = split_card(merge_card(join_card(meta, body), card("A"), "A"))
    assert meta["dataset_info"] == [{"config_name": "B", "features": []}]


def test_secrets_never_reach_the_card_or_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    build = load_build(make_build(tmp_path / "b", "sec", _rows(3, "s")))
    plan = make_plan(build, f"{ORG}/sec", "c1", include_rejects=True, secrets=(TOKEN,))
    assert sorted(plan.files) == ["README.md", "c1/cftdata_manifest.json", "c1/rejects.parquet",
                                  "c1/train-00000-of-00001.parquet"]
    for name in ("README.md", "c1/cftdata_manifest.json"):
        text = plan.files[name].decode()
        assert SECRET not in text and "SECRETSECRET" not in text and TOKEN not in text, name
    manifest = json.loads(published_manifest(build, f"{ORG}/sec", Layout("c1"), None))
    assert manifest["recipe"]["teacher"]["options"]["api_key"] == "***"
    assert manifest["recipe"]["teacher"]["api_key_env"] == "OPENAI_API_KEY"  # the name is kept
    assert manifest["recipe"]["teacher"]["params"]["max_tokens"] == 1024
    assert manifest["published"]["data_files"] == "c1/train-*.parquet"


def test_user_errors_are_one_paragraph(tmp_path):
    for bad in ("noslash", "a/b/c", "-a/b", "a/b--c", "a/b.git", "a /b"):
        with pytest.raises(PushInputError):
            check_repo_id(bad)
    assert check_repo_id("TIGER-Lab/WebInstruct-CFT") == "TIGER-Lab/WebInstruct-CFT"
    for bad in ("data", "a/b", ".hidden", "x" * 65, ""):
        with pytest.raises(PushInputError):
            check_config_name(bad)
    assert check_config_name("default") is None and check_config_name("WebInstruct-CFT-4K") == "WebInstruct-CFT-4K"
    with pytest.raises(PushInputError, match="no manifest.json"):
        load_build(tmp_path)
    build = make_build(tmp_path / "b", "u", _rows(2, "u"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(PushInputError, match="new or empty"):
        dry_run(build, f"{ORG}/u", tmp_path / "full", fetch_existing=False)
    (build / "rejects.parquet").unlink()
    with pytest.raises(PushInputError, match="no rejects.parquet"):  # checked before any network call
        push_build(build, f"{ORG}/u", include_rejects=True, token="x")
    (build / "data" / "train-00000-of-00001.parquet").unlink()
    with pytest.raises(PushInputError, match="missing its data files"):
        load_build(build)


def test_push_command_imports_only_click():
    code = ("import sys, cftdata.publish.commands; bad = [m for m in ('huggingface_hub', 'datasets', 'pyarrow', "
            "'jinja2', 'yaml') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


# ---------------------------------------------------------------------------------------------
# against the loopback hub


def test_push_configs_dry_run_repush_and_load_dataset_round_trip(hub, tmp_path):
    repo = f"{ORG}/webinstruct-cft"
    a = make_build(tmp_path / "a", "cft-a", _rows(7, "a"), shards=2)
    b = make_build(tmp_path / "b", "cft-b", _rows(4, "b"))
    before = tree_digest(a)

    # dry run before the repo exists: exactly the files of the first push
    dry_a = tmp_path / "dry-a"
    r = push_cli(hub, tmp_path, str(a), "--repo", repo, "--config", "A", "--dry-run", str(dry_a))
    assert r.returncode == 0, r.stderr
    assert ("dataset", repo) not in hub.repos
    r = push_cli(hub, tmp_path, str(a), "--repo", repo, "--config", "A")
    assert r.returncode == 0, r.stderr
    files = hub.files(repo)
    assert sorted(files) == [".gitattributes", "A/cftdata_manifest.json", "A/train-00000-of-00002.parquet",
                             "A/train-00001-of-00002.parquet", "README.md"]
    assert tree_digest(dry_a) == {p: hashlib.sha256(c).hexdigest() for p, c in files.items() if p != ".gitattributes"}
    commits = len(hub.repo(repo).log())

    # re-push of the same build: idempotent, no new commit
    r = push_cli(hub, tmp_path, str(a), "--repo", repo, "--config", "A")
    assert r.returncode == 0 and "unchanged" in r.stdout, r.stdout + r.stderr
    assert len(hub.repo(repo).log()) == commits and hub.files(repo) == files

    # a second config: its dry run sees (and merges) the repo's card; config A stays listed
    dry_b = tmp_path / "dry-b"
    r = push_cli(hub, tmp_path, str(b), "--repo", repo, "--config", "B", "--dry-run", str(dry_b))
    assert r.returncode == 0 and "merged" in r.stdout, r.stdout + r.stderr
    r = push_cli(hub, tmp_path, str(b), "--repo", repo, "--config", "B")
    assert r.returncode == 0, r.stderr
    files = hub.files(repo)
    assert {p: hashlib.sha256(files[p]).hexdigest() for p in tree_digest(dry_b)} == tree_digest(dry_b)
    meta, body = split_card(files["README.md"].decode())
    assert [c["config_name"] for c in meta["configs"]] == ["A", "B"]
    assert "## Config `A`" in body and "## Config `B`" in body

    # a new build of A: new commit, one shard now (the stale one is deleted), rejects included, B kept
    a2 = make_build(tmp_path / "a2", "cft-a", _rows(5, "a2"))
    r = push_cli(hub, tmp_path, str(a2), "--repo", repo, "--config", "A", "--include-rejects")
    assert r.returncode == 0, r.stderr
    assert len(hub.repo(repo).log()) == commits + 2
    files = hub.files(repo)
    assert sorted(p for p in files if p.startswith("A/")) == ["A/cftdata_manifest.json", "A/rejects.parquet",
                                                               "A/train-00000-of-00001.parquet"]
    assert "B/train-00000-of-00001.parquet" in files
    card = files["README.md"].decode()
    from huggingface_hub import DatasetCard

    assert [c["config_name"] for c in DatasetCard(card).data.to_dict()["configs"]] == ["A", "B"]
    assert card.count("## Config `A`") == 1 and "Test build cft-b." in card
    for content in files.values():
        assert SECRET.encode() not in content and TOKEN.encode() not in content
    assert tree_digest(a) == before  # the local build is only read

    got = load_from_hub(hub, tmp_path, [("A", repo, "A", False), ("B", repo, "B", False)])
    assert got["A"] == local_rows(a2)
    assert got["B"] == local_rows(b)


def test_private_repo_and_revision_branch(hub, tmp_path):
    repo = "tester/private-cft"
    build = make_build(tmp_path / "p", "priv", _rows(3, "p"))
    r = push_cli(hub, tmp_path, str(build), "--repo", repo, "--private")
    assert r.returncode == 0, r.stderr
    assert hub.repo(repo).private
    assert httpx.head(f"{hub.url}/datasets/{repo}/resolve/main/README.md").status_code == 401
    r = push_cli(hub, tmp_path, str(build), "--repo", repo, "--config", "dev-cfg", "--revision", "dev")
    assert r.returncode == 0, r.stderr
    assert "dev-cfg/train-00000-of-00001.parquet" in hub.files(repo, "dev")
    assert "dev-cfg/train-00000-of-00001.parquet" not in hub.files(repo, "main")
    got = load_from_hub(hub, tmp_path, [("auth", repo, None, False), ("anon", repo, None, True)])
    assert got["auth"] == local_rows(build)
    assert got["anon"].startswith("error:")
    # --private into an existing public repo is refused (nothing published)
    public = make_build(tmp_path / "q", "pub", _rows(2, "q"))
    assert push_cli(hub, tmp_path, str(public), "--repo", f"{ORG}/public-cft").returncode == 0
    r = push_cli(hub, tmp_path, str(public), "--repo", f"{ORG}/public-cft", "--config", "x", "--private")
    assert r.returncode == 2 and "is public" in r.stderr


def test_auth_failure_leaves_the_build_intact(hub, tmp_path):
    build = make_build(tmp_path / "b", "auth", _rows(3, "z"))
    before = tree_digest(build)
    wrong = "hf_wrongwrongwrongwrongwrong"
    r = push_cli(hub, tmp_path, str(build), "--repo", f"{ORG}/auth-cft", "--config", "c", token=wrong)
    assert r.returncode == 2
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert "401" in err and "intact" in err and "HF_TOKEN" in err
    assert f"Rerun with: cftdata push {build} --repo {ORG}/auth-cft --config c" in err
    assert wrong not in err
    assert ("dataset", f"{ORG}/auth-cft") not in hub.repos and tree_digest(build) == before
    r = push_cli(hub, tmp_path, str(build), "--repo", f"{ORG}/auth-cft", token=None)
    assert r.returncode == 2 and "needs a Hugging Face token" in r.stderr
    r = push_cli(hub, tmp_path, str(build), "--repo", "someone-else/auth-cft")
    assert r.returncode == 2 and "403" in r.stderr and tree_digest(build) == before


def test_conflicts_are_retried_then_reported(hub, tmp_path):
    repo = f"{ORG}/busy-cft"
    build = make_build(tmp_path / "b", "busy", _rows(3, "c"))
    hub.fail_next[("POST", "commit")] = [412]  # someone else committed between our read and our commit
    r = push_cli(hub, tmp_path, str(build), "--repo", repo, "--config", "c1")
    assert r.returncode == 0, r.stderr
    assert [s for m, p, s in hub.requests if m == "POST" and p == f"/api/datasets/{repo}/commit/main"] == [412, 200]
    hub.fail_next[("POST", "commit")] = [409, 409, 409]
    other = make_build(tmp_path / "o", "busy", _rows(4, "o"))
    r = push_cli(hub, tmp_path, str(other), "--repo", repo, "--config", "c2")
    assert r.returncode == 1 and "conflict" in r.stderr and "Rerun with: cftdata push" in r.stderr
    assert "c2/cftdata_manifest.json" not in hub.files(repo)


def test_dry_run_without_a_reachable_hub_writes_a_fresh_card(hub, tmp_path):
    build = make_build(tmp_path / "b", "off", _rows(2, "f"))
    hub_down = HubServer()  # never started: its port is None -> nothing listens on the URL below
    hub_down.port = 9
    r = push_cli(hub_down, tmp_path, str(build), "--repo", f"{ORG}/off", "--dry-run", str(tmp_path / "dry"))
    hub_down.stop()
    assert r.returncode == 0 and "not merged" in r.stderr, r.stderr
    assert sorted(tree_digest(tmp_path / "dry")) == ["README.md", "cftdata_manifest.json",
                                                     "data/train-00000-of-00001.parquet"]


def test_recipe_hub_section_pushes_at_the_end_of_a_build(hub, tmp_path):
    """`hub:` in a recipe: `cftdata build` pushes the finished build; load_dataset reads it back."""
    src = tmp_path / "cft.jsonl"
    src.write_text("".join(json.dumps({"question": f"What is {i}+{i}?", "response": f"{2 * i}",
                                       "critique": f"Correct.\nConclusion: right [END] {i}"}) + "\n"
                           for i in range(5)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({
        "name": "hubbed", "source": {"path": str(src), "response": "response"},
        "teacher": {"backend": "existing", "model": "published"},
        "output": {"dir": str(tmp_path / "out")},
        "hub": {"repo": "cft-org/recipe-push", "config": "small"},
    }))
    res = subprocess.run([sys.executable, "-m", "cftdata.cli", "build", str(recipe), "-q"], cwd=ROOT,
                         capture_output=True, text=True, env=client_env(hub, tmp_path), timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "pushed to" in res.stdout and "config small" in res.stdout
    rows = load_from_hub(hub, tmp_path, [("small", "cft-org/recipe-push", "small", False)])["small"]
    assert len(rows) == 5 and rows[0]["instruction"].startswith("Please critique")
