"""The worked example end to end: examples/warehouse against moto's S3 server."""

from __future__ import annotations

import csv
import os

import pytest

from examples import warehouse
from tests.conftest import OWNER
from tests.utils import assert_error

READER = "reader@example.com"
MANAGER = "manager@example.com"


@pytest.fixture
def seeded(api, s3_server):
    s3_server.reset()
    warehouse.upload_table(s3_server.credentials)
    api.add_dataset("lab")
    api.add_user(READER, datasets={"lab": ["clio_read"]})
    api.add_user(MANAGER, datasets={"lab": ["dataset_admin"]})
    for body in warehouse.definitions(s3_server.credentials, dataset="lab"):
        r = api.post("/twins", user=OWNER, json=body)
        assert r.status_code == 201, r.get_data(as_text=True)
    with open(os.path.join(warehouse.HERE, warehouse.KEY)) as f:
        return list(csv.DictReader(f))


def query(api, user, sql, suffix="", **args):
    return api.post(f"/twins/warehouse.query{suffix}", user=user, json={"sql": sql, **args})


def test_mock_answers_from_synthetic_rows_and_private_from_the_bucket(api, seeded):
    sql = "SELECT cell_id, cell_type FROM cells ORDER BY cell_id"
    mock = query(api, READER, sql, limit=3).get_json()["result"]
    private = query(api, MANAGER, sql, limit=3).get_json()["result"]
    assert mock["columns"] == private["columns"] == ["cell_id", "cell_type"]
    assert [row[0] for row in private["rows"]] == sorted(int(r["cell_id"]) for r in seeded)[:3]
    assert all(row[0] >= 900000 and row[0] < 1000000 for row in mock["rows"])  # never the real ids
    assert mock["truncated"] and private["truncated"]
    count = query(api, OWNER, "SELECT count(*), max(volume_um3) FROM cells").get_json()["result"]
    assert count["rows"][0][0] == len(seeded)
    assert count["rows"][0][1] == max(float(r["volume_um3"]) for r in seeded)
    assert query(api, OWNER, sql, "/mock", limit=3).get_json()["result"] == mock
    assert_error(query(api, READER, sql, "/private"), 403, "forbidden")


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM cells",
        "UPDATE cells SET synapses = 0",
        "DROP TABLE cells",
        "SELECT 1; DROP TABLE cells",
        "SELECT * FROM sqlite_master",
        "PRAGMA table_info(cells)",
        "SELECT * FROM cells; SELECT 1",
        "ATTACH DATABASE 'x.db' AS x",
        "SELECT * FROM nothere",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r",
    ],
)
@pytest.mark.parametrize("user", [READER, MANAGER])
def test_anything_but_one_select_over_cells_is_a_public_400(api, seeded, sql, user):
    body = assert_error(query(api, user, sql), 400, "bad_request")
    assert "only a single read-only SELECT" in body["message"]


def test_row_cap(api, seeded):
    assert_error(query(api, READER, "SELECT * FROM cells", limit=5000), 400, "bad_request")
    result = query(api, MANAGER, "SELECT * FROM cells", limit=1000).get_json()["result"]
    assert len(result["rows"]) == len(seeded) and not result["truncated"]


def test_schema_is_public_and_matches_both_sides(api, seeded):
    r = api.post("/twins/warehouse.schema", user="anyone@example.com", json={})
    columns = [c["name"] for c in r.get_json()["result"]["tables"]["cells"]]
    assert columns == list(seeded[0])


def test_a_failing_private_side_is_explained_to_owners_only(api, seeded):
    r = api.call(
        "PATCH",
        "/twins/warehouse.query",
        user=OWNER,
        json={
            "settings": {
                "private": {
                    "endpoint_url": "http://127.0.0.1:9",
                    "region_name": "us-east-1",
                    "aws_access_key_id": "k",
                    "aws_secret_access_key": "SECRET-KEY-VALUE",
                    "bucket": "b",
                    "key": "k",
                }
            }
        },
    )
    assert r.status_code == 200
    body = assert_error(query(api, MANAGER, "SELECT 1 FROM cells"), 500, "endpoint_error")
    assert "127.0.0.1:9" in body["message"] and "SECRET-KEY-VALUE" not in body["message"]
    assert query(api, READER, "SELECT 1 FROM cells", limit=1).status_code == 200  # the mock still answers
