"""Tests for tests/fakehub.py, driving it with the real huggingface_hub 2.4 / datasets 5.2 clients.

How the environment is set (read this before copying the pattern):

* ``huggingface_hub`` and ``datasets`` read ``HF_ENDPOINT``, ``HF_HUB_DISABLE_XET``,
  ``HF_HUB_OFFLINE`` and the cache locations once, when they are imported. The fake hub's port is
  only known once it runs, and another conftest/test may already have imported the libraries, so:
* In-process tests (upload, CommitScheduler, auth/failures) never rely on ``HF_ENDPOINT``: they
  pass ``endpoint=hub.endpoint`` and ``token=...`` explicitly (``HfApi``, ``hf_hub_download``),
  use ``cache_dir=tmp_path``, and the ``hub`` fixture monkeypatches the two import-time constants
  that are read at call time (``constants.HF_HUB_DISABLE_XET = True``,
  ``constants.HF_HUB_OFFLINE = False``). Module top only sets harmless process-wide defaults
  (``HF_HUB_DISABLE_XET=1``, ``GRADIO_ANALYTICS_ENABLED=False``, no telemetry) before importing.
* The ``datasets`` round trip (push_to_hub with two configs, load_dataset) runs in a SUBPROCESS
  whose environment comes from ``hub.client_env(tmp)``: ``HF_ENDPOINT``, ``HF_HUB_DISABLE_XET=1``,
  ``HF_TOKEN``, ``HF_HOME``/``HF_DATASETS_CACHE`` in tmp, ``HF_HUB_OFFLINE`` unset,
  ``GRADIO_ANALYTICS_ENABLED=False``, all set before the child imports anything.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

# Process-wide defaults that must be in place before huggingface_hub / datasets are imported.
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

import huggingface_hub  # noqa: E402
from huggingface_hub import CommitOperationAdd, CommitScheduler, HfApi, hf_hub_download  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
)

from fakehub import FakeHub  # noqa: E402

TOKEN = "hf_test"


@pytest.fixture
def hub(monkeypatch):
    # Import-time constants that are read again at call time: make them right even if the library
    # was imported before this module (e.g. by a conftest) with other environment values.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with FakeHub(token=TOKEN) as h:
        yield h
        assert h.server_errors == [], h.server_errors[0]


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.endpoint, token=TOKEN)


def _parquet_bytes() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"image_id": ["a", "b"], "label": ["cat", "dog"]}), buf)
    return buf.getvalue()


# --------------------------------------------------------------------------- 1. upload + read back
def test_private_repo_upload_jsonl_and_parquet(hub, api, tmp_path):
    url = api.create_repo("tester/exports", repo_type="dataset", private=True)
    assert url.repo_id == "tester/exports" and url.startswith(hub.endpoint)
    assert hub.repo("tester/exports")["private"] is True

    jsonl = b'{"image_id": "a", "label": "cat"}\n{"image_id": "b", "label": "dog"}\n'
    parquet = _parquet_bytes()
    parquet_path = tmp_path / "labels.parquet"
    parquet_path.write_bytes(parquet)
    api.upload_file(path_or_fileobj=jsonl, path_in_repo="labels.jsonl", repo_id="tester/exports",
                    repo_type="dataset")
    api.upload_file(path_or_fileobj=str(parquet_path), path_in_repo="data/labels.parquet",
                    repo_id="tester/exports", repo_type="dataset", commit_message="add parquet")

    files = hub.files("tester/exports")
    assert files["labels.jsonl"] == jsonl
    assert files["data/labels.parquet"] == parquet
    assert set(files) == {".gitattributes", "labels.jsonl", "data/labels.parquet"}
    assert pq.read_table(io.BytesIO(files["data/labels.parquet"])).to_pydict()["label"] == ["cat", "dog"]

    commits = hub.commits("tester/exports")
    assert [c.message for c in commits] == [
        "initial commit", "Upload labels.jsonl with huggingface_hub", "add parquet"]
    assert commits[2].parent == commits[1].oid and commits[1].parent == commits[0].oid
    assert commits[2].lfs_paths == {"data/labels.parquet"}  # parquet went through LFS, JSONL inline

    reqs = [(m, p, s) for m, p, s in hub.requests]
    assert ("POST", "/api/repos/create", 200) in reqs
    assert ("POST", "/datasets/tester/exports.git/info/lfs/objects/batch", 200) in reqs
    assert sum(1 for m, p, _ in reqs if m == "PUT" and p.startswith("/__fakehub/lfs/")) == 1
    assert sum(1 for m, p, _ in reqs if m == "POST" and p == "/api/datasets/tester/exports/commit/main") == 2

    # Read back through the client too (HEAD + GET on /resolve), then a raw Range request.
    local = hf_hub_download("tester/exports", "data/labels.parquet", repo_type="dataset",
                            endpoint=hub.endpoint, token=TOKEN, cache_dir=tmp_path / "cache")
    assert open(local, "rb").read() == parquet
    req = urllib.request.Request(f"{hub.endpoint}/datasets/tester/exports/resolve/main/labels.jsonl",
                                 headers={"Authorization": f"Bearer {TOKEN}", "Range": "bytes=2-9"})
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 2-9/{len(jsonl)}"
        assert resp.read() == jsonl[2:10]

    # Private: anonymous reads are refused like the Hub does.
    with pytest.raises(RepositoryNotFoundError) as exc:
        HfApi(endpoint=hub.endpoint, token=False).dataset_info("tester/exports")
    assert exc.value.response.status_code == 401


# --------------------------------------------------------------------------- 2. datasets round trip
_DATASETS_CLIENT = r"""
import json, sys
import numpy as np
from datasets import Dataset, Features, Image, Value, load_dataset

repo, paths = sys.argv[1], sys.argv[2:]
records = Dataset.from_dict(
    {"image": paths, "label": [f"label-{i}" for i in range(len(paths))]},
    features=Features({"image": Image(), "label": Value("string")}),
)
records.push_to_hub(repo, config_name="records", private=True)
responses = Dataset.from_dict({"annotator": ["alice", "bob"], "answer": ["yes", "no"]})
responses.push_to_hub(repo, config_name="responses")

r = load_dataset(repo, "records", split="train")
s = load_dataset(repo, "responses", split="train")
print(json.dumps({
    "records": [{"label": row["label"], "pixels": np.asarray(row["image"]).tolist()} for row in r],
    "responses": s.to_list(),
}))
"""


def test_push_two_configs_and_load_dataset_back(hub, tmp_path):
    images, paths = [], []
    for i in range(3):
        arr = np.zeros((4, 5, 3), dtype=np.uint8)
        arr[..., 0] = np.arange(5) * 50
        arr[..., 1] = (np.arange(4) * 60)[:, None]
        arr[..., 2] = i * 70
        path = tmp_path / f"img{i}.png"
        Image.fromarray(arr).save(path)
        images.append(arr)
        paths.append(str(path))

    proc = hub.run_python(_DATASETS_CLIENT, tmp_path, args=["tester/annotations", *paths], timeout=150)
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    assert [row["label"] for row in out["records"]] == ["label-0", "label-1", "label-2"]
    for row, expected in zip(out["records"], images):
        np.testing.assert_array_equal(np.asarray(row["pixels"], dtype=np.uint8), expected)
    assert out["responses"] == [{"annotator": "alice", "answer": "yes"}, {"annotator": "bob", "answer": "no"}]

    files = hub.files("tester/annotations")
    assert "records/train-00000-of-00001.parquet" in files
    assert "responses/train-00000-of-00001.parquet" in files
    assert hub.repo("tester/annotations")["private"] is True
    # The images were embedded in the parquet (bytes, not local paths).
    table = pq.read_table(io.BytesIO(files["records/train-00000-of-00001.parquet"]))
    assert all(cell["bytes"] for cell in table.column("image").to_pylist())

    readme = files["README.md"].decode()
    meta = yaml.safe_load(readme.split("---")[1])
    assert {c["config_name"] for c in meta["configs"]} == {"records", "responses"}
    assert {c["config_name"] for c in meta["dataset_info"]} == {"records", "responses"}

    reqs = hub.requests
    assert any(m == "POST" and p == "/api/validate-yaml" for m, p, _ in reqs)
    assert any(m == "GET" and p.endswith("/records/train-00000-of-00001.parquet") and s == 200
               for m, p, s in reqs)


# --------------------------------------------------------------------------- 3. CommitScheduler
def test_commit_scheduler_commits_only_changes(hub, api, tmp_path):
    folder = tmp_path / "outbox"
    scheduler = CommitScheduler(repo_id="tester/scheduled", repo_type="dataset", folder_path=folder,
                                every=60, private=True, hf_api=api)
    try:
        # The scheduler thread triggers once right away (empty folder -> no commit); let it finish
        # so it cannot race with the manual triggers below.
        deadline = time.monotonic() + 10
        while not hasattr(scheduler, "last_future") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.last_future.result(timeout=10) is None
        assert len(hub.commits("tester/scheduled")) == 1  # just the initial commit

        data = folder / "labels.jsonl"
        data.write_text('{"id": 1}\n')
        first = scheduler.trigger().result(timeout=30)
        assert first is not None
        assert hub.files("tester/scheduled")["labels.jsonl"] == b'{"id": 1}\n'

        with data.open("a") as f:
            f.write('{"id": 2}\n')
        st = data.stat()
        os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # mtime surely differs
        second = scheduler.trigger().result(timeout=30)
        assert second is not None and second.oid != first.oid

        assert scheduler.trigger().result(timeout=30) is None  # nothing changed -> no commit
    finally:
        scheduler.stop()

    commits = hub.commits("tester/scheduled")
    assert [c.message for c in commits] == ["initial commit", "Scheduled Commit", "Scheduled Commit"]
    assert [c.oid for c in commits[1:]] == [first.oid, second.oid]
    assert commits[1].files["labels.jsonl"] == b'{"id": 1}\n'
    assert hub.files("tester/scheduled")["labels.jsonl"] == b'{"id": 1}\n{"id": 2}\n'
    assert hub.repo("tester/scheduled")["private"] is True


# --------------------------------------------------------------------------- 4. auth + failures
def test_writes_need_a_valid_token(hub, api):
    anon = HfApi(endpoint=hub.endpoint, token=False)
    with pytest.raises(HfHubHTTPError) as exc:
        anon.create_repo("tester/nope", repo_type="dataset")
    assert exc.value.response.status_code == 401
    assert not hub.repo_exists("tester/nope")

    api.create_repo("tester/public", repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as exc:
        anon.upload_file(path_or_fileobj=b"x\n", path_in_repo="x.txt", repo_id="tester/public",
                         repo_type="dataset")
    assert exc.value.response.status_code == 401

    bad = HfApi(endpoint=hub.endpoint, token="hf_wrong")
    with pytest.raises(HfHubHTTPError) as exc:
        bad.upload_file(path_or_fileobj=b"x\n", path_in_repo="x.txt", repo_id="tester/public",
                        repo_type="dataset")
    assert exc.value.response.status_code == 401
    assert "Invalid credentials" in str(exc.value)
    assert exc.value.response.json() == {"error": "Invalid credentials in Authorization header"}
    assert len(hub.commits("tester/public")) == 1

    assert api.whoami()["name"] == "tester" and api.whoami()["type"] == "user"
    with pytest.raises(HfHubHTTPError):
        bad.whoami()
    assert anon.dataset_info("tester/public").id == "tester/public"  # public reads need no token


def test_fail_next_and_hub_side_checks(hub, api, tmp_path):
    api.create_repo("tester/flaky", repo_type="dataset")
    hub.fail_next(1, status=500, path_contains="/commit/")
    with pytest.raises(HfHubHTTPError) as exc:
        api.upload_file(path_or_fileobj=b"a\n", path_in_repo="a.txt", repo_id="tester/flaky",
                        repo_type="dataset")
    assert exc.value.response.status_code == 500
    assert len(hub.commits("tester/flaky")) == 1  # nothing stored
    api.upload_file(path_or_fileobj=b"a\n", path_in_repo="a.txt", repo_id="tester/flaky", repo_type="dataset")
    assert hub.files("tester/flaky")["a.txt"] == b"a\n"
    commit_calls = [s for m, p, s in hub.requests if m == "POST" and p.endswith("/commit/main")]
    assert commit_calls == [500, 200]

    # Commit to a repo that does not exist -> 404 RepoNotFound.
    with pytest.raises(RepositoryNotFoundError) as exc:
        api.upload_file(path_or_fileobj=b"a\n", path_in_repo="a.txt", repo_id="tester/missing",
                        repo_type="dataset")
    assert exc.value.response.status_code == 404
    assert exc.value.response.headers["X-Error-Code"] == "RepoNotFound"

    # Stale parentCommit -> 412.
    stale = hub.commits("tester/flaky")[0].oid
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit("tester/flaky", [CommitOperationAdd("b.txt", b"b\n")], commit_message="b",
                          repo_type="dataset", parent_commit=stale)
    assert exc.value.response.status_code == 412

    # Missing file -> 404 EntryNotFound.
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("tester/flaky", "nope.txt", repo_type="dataset", endpoint=hub.endpoint, token=TOKEN,
                        cache_dir=tmp_path / "cache")
    assert any(p.endswith("/resolve/main/nope.txt") and s == 404 for _, p, s in hub.requests)


def test_raw_protocol_checks(hub, api):
    """LFS PUT must match the oid/size from the batch call; NDJSON must be well formed."""
    api.create_repo("tester/raw", repo_type="dataset")
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def call(method, path, body=b"", headers=None):
        req = urllib.request.Request(hub.endpoint + path, data=body, method=method,
                                     headers={**auth, **(headers or {})})
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    data = b"\x00binary payload"
    oid = hashlib.sha256(data).hexdigest()
    status, body = call("POST", "/datasets/tester/raw.git/info/lfs/objects/batch", json.dumps(
        {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]}).encode())
    assert status == 200
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"]
    put_path = href[len(hub.endpoint):]
    assert call("PUT", put_path, b"\x00other payload!")[0] == 400  # sha256 mismatch
    assert call("PUT", put_path, data)[0] == 200

    def ndjson(*items):
        return b"".join(json.dumps(i).encode() + b"\n" for i in items)

    nd = {"Content-Type": "application/x-ndjson"}
    header = {"key": "header", "value": {"summary": "raw", "description": ""}}
    bogus = "0" * 64
    assert call("POST", "/api/datasets/tester/raw/commit/main",
                ndjson(header, {"key": "lfsFile", "value": {"path": "x.bin", "algo": "sha256", "oid": bogus}}),
                nd)[0] == 400  # LFS object never uploaded
    assert call("POST", "/api/datasets/tester/raw/commit/main", b"not json\n", nd)[0] == 400
    assert call("POST", "/api/datasets/tester/raw/commit/main",
                ndjson({"key": "file", "value": {"path": "a.txt", "content": "YQ==", "encoding": "base64"}}),
                nd)[0] == 400  # header missing
    assert call("POST", "/api/datasets/tester/raw/commit/main",
                ndjson(header, {"key": "deletedFile", "value": {"path": "ghost.txt"}}), nd)[0] == 404
    status, body = call("POST", "/api/datasets/tester/raw/commit/main",
                        ndjson(header, {"key": "lfsFile", "value": {"path": "x.bin", "algo": "sha256", "oid": oid}}),
                        nd)
    assert status == 200 and json.loads(body)["commitOid"] == hub.head("tester/raw").oid
    assert hub.files("tester/raw")["x.bin"] == data
