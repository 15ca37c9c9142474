"""The registry's REST API on SQLite and PostgreSQL: register, version, list, page, validate."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.registry.conftest import SCALED, Factory, unique
from tests.registry.files import (
    evil_pickle,
    npz_bytes,
    safetensors_bytes,
    tar_bytes,
    zip_bytes,
)

pytestmark = pytest.mark.services


def test_register_get_and_conflict(registry_app: Factory) -> None:
    name = unique()
    with registry_app(serve=False) as api:
        created = api.client.post(
            "/v1/registry/models",
            json={"name": name, "description": "demo", "labels": {"team": "ml"}},
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert (body["name"], body["aliases"], body["version_count"]) == (name, {}, 0)
        again = api.client.post("/v1/registry/models", json={"name": name})
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "conflict"
        assert api.client.get(f"/v1/registry/models/{name}").json()["labels"] == {"team": "ml"}
        assert api.client.get(f"/v1/registry/models/{unique()}").status_code == 404


@pytest.mark.parametrize(
    "name", ["../etc", "a/../b", "/etc/passwd", "model/..", "..", " ..", ".. ", "", " ", "A"]
)
def test_bad_model_names_are_422(registry_app: Factory, name: str) -> None:
    with registry_app(serve=False) as api:
        response = api.client.post("/v1/registry/models", json={"name": name})
        assert response.status_code == 422, response.text


def test_writes_forbid_unknown_fields(registry_app: Factory) -> None:
    with registry_app(serve=False) as api:
        response = api.client.post(
            "/v1/registry/models", json={"name": unique(), "owner_id": "someone-else"}
        )
        assert response.status_code == 422


def test_versions_are_immutable_numbered_and_carry_schemas(registry_app: Factory) -> None:
    name = unique()
    with registry_app(serve=False) as api:
        first = api.push(name, scale=1, framework="numpy", metrics={"mse": 0.5})
        second = api.push(name, scale=2, description="bigger")
        labelled = api.push(name, scale=3, version="3.0-rc1")
        assert (first["version"], second["version"], labelled["version"]) == ("1", "2", "3.0-rc1")
        assert first["input_schema"]["properties"]["x"]["type"] == "number"
        assert first["output_schema"]["properties"]["y"]["type"] == "number"
        assert first["files"][0]["path"] == "config.json"
        assert first["files"][0]["format"] == "json"
        assert (first["framework"], first["metrics"]) == ("numpy", {"mse": 0.5})
        duplicate = api.client.post(
            f"/v1/registry/models/{name}/versions",
            json={"service": SCALED, "version": "2", "files": []},
        )
        assert duplicate.status_code == 409
        listed = api.client.get(f"/v1/registry/models/{name}/versions").json()
        assert [v["version"] for v in listed["data"]] == ["3.0-rc1", "2", "1"]
        model = api.client.get(f"/v1/registry/models/{name}").json()
        assert (model["version_count"], model["latest_version"]) == (3, "3.0-rc1")
        got = api.client.get(f"/v1/registry/models/{name}/versions/2").json()
        assert got["description"] == "bigger"
        assert api.client.get(f"/v1/registry/models/{name}/versions/9").status_code == 404


def test_pagination_is_capped_and_validated(registry_app: Factory) -> None:
    with registry_app(serve=False, max_page_size=2) as api:
        for _ in range(3):
            api.client.post("/v1/registry/models", json={"name": unique("page")})
        page = api.client.get("/v1/registry/models", params={"limit": 10**9}).json()
        assert (page["limit"], len(page["data"])) == (2, 2)
        assert page["count"] >= 3
        rest = api.client.get("/v1/registry/models", params={"limit": 2, "offset": 2}).json()
        assert {m["name"] for m in rest["data"]}.isdisjoint({m["name"] for m in page["data"]})
        for params in ({"offset": -1}, {"offset": 10**12}, {"limit": 0}, {"limit": "x"}):
            response = api.client.get("/v1/registry/models", params=params)
            assert response.status_code == 422, params
        far = api.client.get("/v1/registry/models", params={"offset": 999_999}).json()
        assert far["data"] == []


def test_version_requires_uploaded_blobs_and_an_importable_service(registry_app: Factory) -> None:
    name = unique()
    with registry_app(serve=False) as api:
        api.client.post("/v1/registry/models", json={"name": name})
        url = f"/v1/registry/models/{name}/versions"
        missing = api.client.post(
            url, json={"service": SCALED, "files": [{"path": "a.json", "sha256": "a" * 64}]}
        )
        assert missing.status_code == 422
        assert "upload" in missing.json()["error"]["message"]
        for service in ("tests.registry.nope:Scaled", "tests.registry.services:Nope", "os:path"):
            response = api.client.post(url, json={"service": service})
            assert response.status_code == 422, (service, response.text)
        several = api.client.post(url, json={"service": "tests.registry.services"})
        assert several.status_code == 422
        assert "several" in several.json()["error"]["message"]
        ghost = api.client.post(
            f"/v1/registry/models/{unique()}/versions", json={"service": SCALED}
        )
        assert ghost.status_code == 404


@pytest.mark.parametrize(
    "path", ["../etc/passwd", "/etc/passwd", "a/../../b", "model/..", "..", " ..", ".. ", " "]
)
def test_upload_paths_that_traverse_are_422(registry_app: Factory, path: str) -> None:
    with registry_app(serve=False) as api:
        response = api.client.post("/v1/registry/uploads", params={"path": path}, content=b"{}")
        assert response.status_code == 422, response.text


def test_upload_checks_content_and_pickles_need_trust(registry_app: Factory, tmp_path) -> None:
    sentinel = tmp_path / "pwned"
    name = unique()
    with registry_app(serve=False) as api:
        wrong = api.client.post(
            "/v1/registry/uploads",
            params={"path": "weights.safetensors"},
            content=evil_pickle(sentinel),
        )
        assert wrong.status_code == 422
        # An admin may store a pickle (flagged), but a version may use it only when trusted.
        stored = api.upload("model.pkl", evil_pickle(sentinel))
        assert stored["format"] == "pickle" and stored["needs_trust"]
        api.client.post("/v1/registry/models", json={"name": name})
        ref = [{"path": "model.pkl", "sha256": stored["sha256"]}]
        url = f"/v1/registry/models/{name}/versions"
        refused = api.client.post(url, json={"service": SCALED, "files": ref})
        assert refused.status_code == 422
        assert "trusted" in refused.json()["error"]["message"]
        trusted = api.client.post(url, json={"service": SCALED, "files": ref, "trusted": True})
        assert trusted.status_code == 201
        assert trusted.json()["trusted"] is True
        # A blob uploaded under a safe name cannot be re-declared as something else.
        renamed = [{"path": "weights.json", "sha256": stored["sha256"]}]
        assert api.client.post(url, json={"service": SCALED, "files": renamed}).status_code == 422
    assert not sentinel.exists()


def test_archives_unpack_into_files_and_bombs_are_refused(registry_app: Factory) -> None:
    with registry_app(serve=False, max_unpacked_bytes=1024 * 1024) as api:
        files = {"config.json": b'{"scale": 2}', "w/a.npz": npz_bytes(a=[1.0, 2.0])}
        for kind, data in (("zip", zip_bytes(files)), ("tar", tar_bytes(files))):
            response = api.client.post(
                "/v1/registry/uploads", params={"archive": kind}, content=data
            )
            assert response.status_code == 201, response.text
            assert sorted(f["path"] for f in response.json()["files"]) == sorted(files)
        bomb = zip_bytes({"zeros.json": b"0" * (8 * 1024 * 1024)})
        refused = api.client.post("/v1/registry/uploads", params={"archive": "zip"}, content=bomb)
        assert refused.status_code == 422
        linked = zip_bytes({"a.json": b"{}"}, symlink="link")
        refused = api.client.post("/v1/registry/uploads", params={"archive": "zip"}, content=linked)
        assert refused.status_code == 422
        assert "link" in refused.json()["error"]["message"]


def test_upload_size_cap_and_request_shape(registry_app: Factory) -> None:
    with registry_app(serve=False, max_upload_bytes=1000) as api:
        big = api.client.post(
            "/v1/registry/uploads", params={"path": "a.json"}, content=b"[" + b"0," * 600 + b"0]"
        )
        assert big.status_code == 413
        neither = api.client.post("/v1/registry/uploads", content=b"{}")
        assert neither.status_code == 422
        both = api.client.post(
            "/v1/registry/uploads", params={"path": "a.json", "archive": "zip"}, content=b"{}"
        )
        assert both.status_code == 422
        multipart = api.client.post(
            "/v1/registry/uploads", params={"path": "a.json"}, files={"f": ("a.json", b"{}")}
        )
        assert multipart.status_code == 415


def test_uploads_stream_past_the_request_body_limit(registry_app: Factory) -> None:
    weights = safetensors_bytes({"w": np.arange(64 * 1024, dtype="<f4")})  # 256 KiB
    with registry_app(serve=False, max_body_bytes=16 * 1024) as api:
        stored = api.upload("w.safetensors", weights)
        assert (stored["size"], stored["format"]) == (len(weights), "safetensors")

        def chunked() -> Iterator[bytes]:
            for start in range(0, len(weights), 10_000):
                yield weights[start : start + 10_000]

        streamed = api.client.post(
            "/v1/registry/uploads", params={"path": "w2.safetensors"}, content=chunked()
        )
        assert streamed.status_code == 201, streamed.text
        assert streamed.json()["files"][0]["sha256"] == stored["sha256"]
        # Other routes keep the small limit.
        big_name = api.client.post("/v1/registry/models", content=b"{" + b" " * 20_000 + b"}")
        assert big_name.status_code == 413
