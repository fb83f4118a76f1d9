"""Hostile and mistaken input gets a clear 4xx (never a 500, never a broken 200), reproduced as a
curl would send it: NaN and friends, impossible ids, deep nesting, Firestore's limits, contention,
streams that fail, unroutable paths, forged token headers, unknown parameters."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import OWNER
from tests.utils import assert_error

RESEARCHER = "researcher@example.com"


@pytest.fixture
def world(api):
    api.add_dataset("mb20", public=True)
    api.add_user(RESEARCHER, global_roles=["clio_general"])


def raw_post(api, path, text, user=OWNER):
    return api.call("POST", path, user=user, data=text, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    "text", ['{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}', '{"a": 1e400}', '{"a": [1, 2, -1e999]}']
)
def test_non_finite_numbers_are_refused_everywhere(api, world, text):
    assert_error(raw_post(api, "/annotations/mb20?x=1&y=2&z=3", text, RESEARCHER), 422, "validation_error")
    assert_error(
        raw_post(api, "/atlas/mb20?x=1&y=2&z=3", text.replace('"a"', '"title": "t", "a"'), RESEARCHER),
        422,
        "validation_error",
    )
    assert_error(
        api.call(
            "PUT", "/datasets/mb20", user=OWNER, data=text, headers={"Content-Type": "application/json"}
        ),
        422,
        "validation_error",
    )
    # Nothing was stored, so every list stays valid JSON.
    assert api.get("/annotations/mb20", user=RESEARCHER).get_json() == {}
    assert json.loads(api.get("/atlas/all", user=OWNER).get_data()) == []
    assert "a" not in json.loads(api.get("/datasets", user=OWNER).get_data())["mb20"]


@pytest.mark.parametrize(
    "path",
    [
        "/datasets/__x__",
        "/datasets/__name__",
        "/datasets/%2e%2e",
        "/datasets/..",
        "/annotations/__x__",
        "/annotations/v2/__name__",
        "/atlas/__x__",
        "/transfer/__x__",
        "/transfer/..",
        "/savedsearches/__x__",
        "/signatures/atlocation/__x__?x=1&y=2&z=3",
        "/datasets/_deletions/__x__",
    ],
)
def test_impossible_ids_in_the_path_are_404(api, world, path):
    assert_error(api.get(path, user=OWNER), 404, "not_found")


def test_impossible_key_ids_are_404_and_forged_cursors_400(api, world):
    assert_error(api.delete("/users/me/keys/__x__", user=OWNER), 404, "not_found")
    assert_error(api.delete("/users/me/keys/..", user=OWNER), 404, "not_found")
    for doc_id in ["__x__", "..", "a/b", "x" * 2000]:
        cursor = base64.urlsafe_b64encode(doc_id.encode()).decode().rstrip("=")
        assert_error(api.get(f"/annotations/v2/mb20?limit=1&cursor={cursor}", user=OWNER), 400, "bad_request")
        assert_error(api.get(f"/datasets/mb20/logs?limit=1&cursor={cursor}", user=OWNER), 400, "bad_request")
    assert_error(api.get("/transfer?limit=1&cursor=%%%", user=OWNER), 400, "bad_request")


def test_deep_nesting_is_refused(api, world):
    deep = "[" * 5000 + "]" * 5000
    assert_error(
        raw_post(api, "/annotations/mb20?x=1&y=2&z=3", '{"a": ' + deep + "}", RESEARCHER),
        422,
        "validation_error",
    )
    assert_error(
        raw_post(
            api,
            "/annotations/v2/mb20",
            '{"kind": "point", "pos": [1, 2, 3], "prop": {"a": ' + deep + "}}",
            RESEARCHER,
        ),
        422,
        "validation_error",
    )
    assert_error(
        raw_post(api, "/annotations/mb20?x=1&y=2&z=3", '{"a": ' + "[" * 40 + "]" * 40 + "}", RESEARCHER),
        422,
        "validation_error",
    )


def forged(header: dict, claims: dict) -> str:
    part = lambda value: base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")  # noqa: E731
    return f"{part(header)}.{part(claims)}.c2ln"


def test_a_deeply_nested_token_is_401(api):
    payload = base64.urlsafe_b64encode(("[" * 5000 + "]" * 5000).encode()).decode().rstrip("=")
    assert_error(api.get("/roles", token=f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"), 401, "unauthenticated")
    assert_error(api.get("/roles", token="a." + "b" * 20000 + ".c"), 401, "unauthenticated")


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none"},
        {"alg": "HS256", "kid": "k"},
        {"alg": "RS256"},
        {"alg": "RS256", "kid": ""},
        {"alg": "ES256", "kid": "test-kid-1"},
    ],
)
def test_forged_google_headers_are_401_before_any_certificate_fetch(api, certs_server, header):
    before = certs_server.fetches
    token = forged(
        header,
        {
            "iss": "https://accounts.google.com",
            "aud": "gatehouse-test-audience",
            "email": "x@example.com",
            "email_verified": True,
            "exp": 9999999999,
        },
    )
    assert_error(api.get("/roles", token=token), 401, "unauthenticated")
    assert certs_server.fetches == before


def test_firestore_limits_are_checked_before_writing(api, world):
    long_field = {"k" * 1501: 1}
    assert_error(
        api.post("/annotations/mb20?x=1&y=2&z=3", user=RESEARCHER, json=long_field), 422, "validation_error"
    )
    # A v1 body just under the 1 MiB request limit cannot be stored with its own fields: 413, said why.
    big = '{"a": "' + "x" * ((1 << 20) - 12) + '"}'
    body = assert_error(
        raw_post(api, "/annotations/mb20?x=1&y=2&z=3", big, RESEARCHER), 413, "payload_too_large"
    )
    assert "limit" in body["message"]
    assert_error(
        raw_post(api, "/annotations/mb20?x=1&y=2&z=3", '{"\\ud800": 1}', RESEARCHER), 422, "validation_error"
    )
    assert_error(
        raw_post(api, "/annotations/mb20?x=1&y=2&z=3", '{"a": "\\udfff"}', RESEARCHER),
        422,
        "validation_error",
    )
    assert_error(api.get("/annotations/v2/mb20?tag=" + "t" * 1501, user=OWNER), 400, "bad_request")
    assert api.get("/annotations/mb20", user=RESEARCHER).get_json() == {}


def test_a_large_dataset_never_makes_its_audit_entry_fail_a_change(api, world):
    metadata = {"blob": "m" * 600_000}
    assert api.put("/datasets/mb20", user=OWNER, json=metadata).status_code == 200
    assert api.put("/datasets/mb20", user=OWNER, json={"description": "again"}).status_code == 200
    assert api.post("/datasets/mb20/finalize", user=OWNER).status_code == 200
    log = api.get("/datasets/mb20/logs", user=OWNER).get_json()
    assert [e["action"] for e in log] == ["finalize", "dataset_update", "dataset_update", "dataset_create"]
    first_update = log[2]
    assert first_update["compacted"] is True
    assert first_update["after"]["blob"]["omitted_bytes"] > 600_000
    assert len(first_update["after"]["blob"]["sha256"]) == 64
    assert log[1]["after"]["description"] == "again" and "blob" not in log[1]["after"]  # only what changed


def test_concurrent_changes_of_one_document_never_answer_500(api, world):
    entry = api.post("/atlas/mb20?x=1&y=2&z=3", user=RESEARCHER, json={"title": "t"}).get_json()["id"]

    def verify(_):
        return api.post(f"/atlas/verify/{entry}", user=OWNER)

    def key(i):
        return api.post("/users/me/keys", user=RESEARCHER, json={"name": f"k{i}"})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(verify, range(4))) + list(pool.map(key, range(7)))
    for r in answers:
        assert r.status_code in (200, 201, 409, 503), r.get_data(as_text=True)
        if r.status_code == 503:
            assert r.headers["Retry-After"]
    assert len(api.get("/users/me/keys", user=RESEARCHER).get_json()) <= 5  # integrity held


def test_attachment_names_ending_in_a_newline_are_refused(api, world):
    import io

    r = api.post(
        "/datasets/mb20/attachments",
        user=OWNER,
        content_type="multipart/form-data",
        data={"name": "notes.txt\n", "attachment": (io.BytesIO(b"x"), "notes.txt")},
    )
    assert_error(r, 422, "validation_error")


def test_a_path_functions_framework_cannot_route_gets_the_envelope(api, world):
    r = api.get("/datasets/mb20%0A", user=OWNER)
    assert_error(r, 404, "not_found")
    assert r.headers["X-Request-Id"]


def test_unknown_query_parameters_are_400_naming_them(api, world):
    body = assert_error(api.get("/annotations/v2/mb20?limt=5", user=OWNER), 400, "bad_request")
    assert "'limt'" in body["message"] and body["details"]["unknown"] == ["limt"]
    assert_error(api.get("/datasets?x=1", user=OWNER), 400, "bad_request")
    assert api.get("/annotations/v2/mb20?limit=5", user=OWNER).status_code == 200


def test_a_verify_404_reads_the_same_for_a_missing_entry_and_an_unreadable_dataset(api, world):
    api.add_dataset("secret")
    hidden = api.post("/atlas/secret?x=1&y=2&z=3", user=OWNER, json={"title": "t"}).get_json()["id"]
    missing = "0" * 32
    stranger = "stranger@example.com"  # no roles: reads only the public mb20
    a = assert_error(api.post(f"/atlas/verify/{hidden}", user=stranger), 404, "not_found")
    b = assert_error(api.post(f"/atlas/verify/{missing}", user=stranger), 404, "not_found")
    assert a["message"].replace(hidden, "ID") == b["message"].replace(missing, "ID")
    assert "secret" not in a["message"]


def test_the_audit_entry_keeps_the_servers_request_id(api, world):
    r = api.put(
        "/datasets/mb20", user=OWNER, json={"description": "d"}, headers={"X-Request-Id": "mine-12345678"}
    )
    entry = api.get("/datasets/mb20/logs?limit=1", user=OWNER).get_json()[0]
    assert entry["request_id"] == r.headers["X-Request-Id"] != "mine-12345678"


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "cannot read"),
        ("", "no records"),
        ("x,y\n1,2\n", "expected 4 columns"),
        ("a,b,c,d\n1,2,3,notanumber\n", "not a file"),
    ],
)
def test_the_signatures_builder_says_what_is_wrong_in_one_line(tmp_path, test_env, content, words):
    import subprocess
    import sys

    from tests.conftest import ROOT

    path = tmp_path / "points.csv"
    if content is not None:
        path.write_text(content)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.build_signatures",
            "--dataset",
            "mb20",
            "--input",
            str(path),
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert words in done.stderr and "Traceback" not in done.stderr


def test_the_signatures_builder_refuses_bad_names_and_missing_buckets(tmp_path, test_env):
    import subprocess
    import sys

    from tests.conftest import ROOT

    path = tmp_path / "points.csv"
    path.write_text("1,2,3,4\n")

    def run(*args):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "tools.build_signatures",
                "--input",
                str(path),
                "--quiet",
                *args,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    bad = run("--dataset", "a/b")
    assert bad.returncode != 0 and "not a dataset name" in bad.stderr and "Traceback" not in bad.stderr
    missing = run("--dataset", "mb20", "--bucket", "no-such-bucket-here")
    assert (
        missing.returncode != 0 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )


def test_an_encoded_slash_is_never_a_path_separator(api, world):
    """`%2F` inside a segment is not routed as `/` (mb20%2Fattachments is no dataset name)."""
    assert api.get("/datasets/mb20/attachments", user=OWNER).status_code == 200
    for path in ("/datasets/mb20%2Fattachments", "/datasets/mb20%2fattachments", "/users/me%2Fkeys"):
        assert_error(api.get(path, user=OWNER), 404, "not_found")


def test_an_email_a_user_record_cannot_have_is_refused_at_the_door(api, world, keys):
    """A dev token for an email with "/" (a user record's id cannot hold it) is 401, not a 500."""
    from common.identity.auth import mint_dev_token

    for email in ("a/b@example.com", "../x@example.com"):
        token = mint_dev_token(email, keys.dev_key_pem)
        assert_error(api.get("/roles", token=token), 401, "unauthenticated")
        assert_error(api.get("/datasets", token=token), 401, "unauthenticated")
    assert_error(api.post("/users", user=OWNER, json={"a/b@example.com": {}}), 422, "validation_error")
    assert_error(api.get("/users/a%2Fb@example.com/keys", user=OWNER), 404, "not_found")


def test_a_user_name_with_control_characters_is_refused(api, world):
    for name in ("a\u0000b", "line\nbreak", "bell\u0007", "del\u007f", "c1\u0085"):
        assert_error(
            api.post("/users", user=OWNER, json={"x@example.com": {"name": name}}), 422, "validation_error"
        )
    assert api.get("/users", user=OWNER).get_json().get("x@example.com") is None
    ok = api.post("/users", user=OWNER, json={"x@example.com": {"name": "Zoë O'Brien-Ñ (lab 3)"}})
    assert ok.status_code == 200, ok.get_data(as_text=True)


def test_v2_annotations_firestore_refuses_answer_in_our_words(api, world):
    """A value Firestore cannot hold (here an annotation over its 1 MiB document limit) is 422
    with our own message, never Firestore's."""
    big = {"kind": "point", "pos": [1, 2, 3], "prop": {"a": "x" * (1100 * 1024)}}
    body = assert_error(api.post("/annotations/v2/mb20", user=RESEARCHER, json=big), 422, "validation_error")
    assert "firestore" not in body["message"].lower() and "entity" not in body["message"]
    assert "limit" in body["message"]
    assert body["details"] == {"written": [], "not_written": ["Pt1_2_3"]}


@pytest.mark.parametrize(
    "filename,mimetype,served",
    [
        ("page.html", "text/html", "application/octet-stream"),
        ("image.svg", "image/svg+xml", "application/octet-stream"),
        ("notes.txt", "text/plain", "text/plain"),
        ("figure.png", "image/png", "image/png"),
    ],
)
def test_attachments_download_as_files_of_a_safe_type(api, world, filename, mimetype, served):
    """An uploaded page is never served as a page: every download is an attachment, of its own
    type only when that is on a small safe list."""
    import io

    import requests

    r = api.post(
        "/datasets/mb20/attachments",
        user=OWNER,
        content_type="multipart/form-data",
        data={"name": filename, "attachment": (io.BytesIO(b"<script>alert(1)</script>"), filename, mimetype)},
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    listed = api.get("/datasets/mb20/attachments", user=OWNER)
    assert listed.headers["X-Content-Type-Options"] == "nosniff"
    [attachment] = listed.get_json()
    download = requests.get(attachment["url"], timeout=10)
    assert download.content == b"<script>alert(1)</script>"
    assert download.headers["Content-Type"] == served
    assert download.headers["Content-Disposition"] == f'attachment; filename="{filename}"'
    assert "response-content-disposition=attachment" in attachment["url"]  # GCS: also for older uploads
