"""The worked example of twin endpoints, in the spirit of a private data API: `warehouse.query`
answers one read-only SELECT over the table `cells`, from a synthetic table on its mock side and
from the real table (a CSV object in an S3 bucket, read with boto3) on its private side;
`warehouse.schema` is public. The sources are the .py files next to this one; `make dev` and the
tests seed them with `definitions()` after `upload_table()`.
"""

from __future__ import annotations

import os
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
BUCKET = "gatehouse-warehouse"
KEY = "cells.csv"


def source(name: str) -> str:
    with open(os.path.join(HERE, f"{name}.py")) as f:
        return f.read()


def definitions(s3: dict[str, str], dataset: str | None = None) -> list[dict[str, Any]]:
    """POST /twins bodies; `s3` has endpoint_url, region_name, aws_access_key_id and
    aws_secret_access_key (the private side's settings, with the bucket and key)."""
    helpers = [source("columns"), source("run_select")]
    query = {
        "path": "warehouse.query",
        "timeout_s": 30,
        "description": "One read-only SELECT over the table cells (at most 1000 rows).",
        "mock": {"code": source("query_mock"), "helpers": helpers},
        "private": {
            "code": source("query_private"),
            "helpers": helpers,
            "settings": {**s3, "bucket": BUCKET, "key": KEY},
        },
    }
    if dataset:
        query["dataset"] = dataset
    schema = {
        "path": "warehouse.schema",
        "description": "The warehouse's tables and columns.",
        "public": {"code": source("schema"), "helpers": [source("columns")]},
    }
    return [schema, query]


def upload_table(s3: dict[str, str]) -> None:
    """Put the real table (cells.csv here) into the bucket the private side reads."""
    import boto3

    client = boto3.client("s3", **s3)
    client.create_bucket(Bucket=BUCKET)
    with open(os.path.join(HERE, KEY), "rb") as f:
        client.put_object(Bucket=BUCKET, Key=KEY, Body=f.read())
