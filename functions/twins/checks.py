"""The twins function's route checks: each loads what it authorizes (the endpoint and its side,
the approval request, the job) and hands it to the handler, or answers 403/404 (common.web.http.Check)."""

from __future__ import annotations

from typing import Any

from common import errors
from common.web.http import Check
from functions.twins import approvals, calls, jobs


def _endpoint_check(describe: str, side: str | None = None, *, owners: bool = False) -> Check:
    def run(req, params: dict[str, Any]) -> dict[str, Any]:
        endpoint, chosen = calls.resolve(req.caller, params["path"], side)
        if owners and not endpoint.owned_by(req.caller):
            raise errors.Forbidden("this needs admin or manage on the endpoint's dataset")
        return {"endpoint": endpoint, "side": chosen}

    return Check(describe, run)


VISIBLE = _endpoint_check("read on the endpoint's dataset (any authenticated user when it has none)")
OWNERS = _endpoint_check("admin or manage on the endpoint's dataset", owners=True)
DEFAULT_SIDE = _endpoint_check(
    "read on the endpoint's dataset; runs the private side for admins and "
    "manage on the dataset, the mock side for everyone else"
)
MOCK_SIDE = _endpoint_check("read on the endpoint's dataset", "mock")
PRIVATE_SIDE = _endpoint_check("admin or manage on the endpoint's dataset", "private")


def _approval_check(describe: str, *, owners: bool = False, requester: bool = False) -> Check:
    """Loads the approval request that `/twins/requests/<request_id>` names (404 unless the caller
    is its requester or owns an endpoint it names) and hands it to the handler as `approval`."""

    def run(req, params: dict[str, Any]) -> dict[str, Any]:
        approval = approvals.get_visible(req.caller, params["request_id"])
        if owners and not approvals.owns_all(req.caller, approval):
            raise errors.Forbidden(
                "this needs admin or manage on the dataset of every endpoint the request names"
            )
        if requester and approval["requester"] != req.caller.email:
            raise errors.Forbidden("only the requester runs a request")
        return {"approval": approval}

    return Check(describe, run)


APPROVAL_VISIBLE = _approval_check("the requester, or admin or manage on an endpoint the request names")
APPROVAL_OWNERS = _approval_check(
    "admin or manage on the dataset of every endpoint the request names", owners=True
)
REQUESTER = _approval_check("the requester (once the request is approved)", requester=True)


def _see_job(req, params: dict[str, Any]) -> dict[str, Any]:
    return {"job": jobs.get_visible(req.caller, params["job_id"])}


JOB_VISIBLE = Check(
    "the job's caller, or admin or manage on what it ran (a request's run: on every endpoint it names)",
    _see_job,
)
