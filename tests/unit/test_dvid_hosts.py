"""functions.bodyannotations.dvid.public_host: a dataset's `dvid` (set by its managers) may name
a server on the internet, never this machine, the metadata server or a private network."""

from __future__ import annotations

import pytest

from functions.bodyannotations.dvid import public_host


@pytest.mark.parametrize(
    "host", ["manc-dvid.janelia.org", "emdata.example.org.", "8.8.8.8", "2001:4860:4860::8888"]
)
def test_internet_hosts_may_be_dvid_servers(host):
    assert public_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "",
        "localhost",
        "api.localhost",
        "metadata.google.internal",
        "metadata",
        "printer.local",
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fd00::1",
        "0.0.0.0",
    ],
)
def test_this_machine_and_private_networks_may_not(host):
    assert not public_host(host)
