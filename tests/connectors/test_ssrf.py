"""The webhook SSRF guard: which URLs and addresses may be posted to, in production and in
development, on literal addresses and on names (``localhost`` from /etc/hosts, and
resolvers the test gives: the machine has no outside DNS).
"""

from __future__ import annotations

import socket

import pytest

from connectors.ssrf import UnsafeURL, address_kind, check_url, system_resolver


def resolver(table: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("93.184.215.14", "public"),
        ("8.8.8.8", "public"),
        ("2606:4700::1111", "public"),
        ("127.0.0.1", "local"),
        ("127.255.0.9", "local"),
        ("::1", "local"),
        ("10.1.2.3", "local"),
        ("172.16.0.1", "local"),
        ("172.31.255.255", "local"),
        ("192.168.1.1", "local"),
        ("100.64.0.1", "local"),  # carrier-grade NAT
        ("fc00::1", "local"),
        ("fd12:3456::1", "local"),
        ("::ffff:127.0.0.1", "local"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "local"),
        ("2002:7f00:1::", "local"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a00:1", "local"),  # NAT64 around 10.0.0.1
        ("::ffff:8.8.8.8", "public"),
        ("64:ff9b::808:808", "public"),
        ("0.0.0.0", "forbidden"),
        ("::", "forbidden"),
        ("169.254.169.254", "forbidden"),  # cloud metadata
        ("::ffff:169.254.169.254", "forbidden"),
        ("fe80::1", "forbidden"),
        ("224.0.0.1", "forbidden"),
        ("ff02::1", "forbidden"),
        ("255.255.255.255", "forbidden"),
        ("240.0.0.1", "forbidden"),
        ("192.0.2.1", "forbidden"),  # documentation
        ("2001:db8::1", "forbidden"),
        ("198.18.0.1", "forbidden"),  # benchmarking
        ("::127.0.0.1", "forbidden"),  # IPv4-compatible, deprecated
    ],
)
def test_address_kind(address, kind):
    assert address_kind(address) == kind


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://10.0.0.5/hook",
        "https://192.168.0.1:8443/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://0.0.0.0/",
        "https://[::ffff:127.0.0.1]/",
        "https://[fe80::1]/",
        "https://2130706433/",  # 127.0.0.1 as one number
        "https://0x7f.1/",
        "https://127.1/",
        "https://017700000001/",  # octal
        "https://localhost/hook",
        "https://localhost./hook",
        "https://api.localhost/hook",
    ],
)
def test_production_refuses_local_and_reserved_hosts_for_good(url):
    with pytest.raises(UnsafeURL) as refused:
        check_url(url, resolve=resolver({}))
    assert refused.value.permanent


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://93.184.215.14/hook", "https://"),
        ("ftp://93.184.215.14/hook", "https://"),
        ("javascript:alert(1)", "https://"),
        ("https://user:pass@93.184.215.14/hook", "user name or password"),
        ("https://user@93.184.215.14/hook", "user name or password"),
        ("https:///hook", "name a host"),
        ("https://93.184.215.14:99999/", "port"),
        ("https://93.184.215.14:0/", "port"),
        ("https://exämple.com/hook", "printable ASCII"),
        ("https://example.com/a b", "printable ASCII"),
        ("https://example.com/" + "a" * 2100, "printable ASCII"),
    ],
)
def test_urls_refused_for_their_form(url, reason):
    for allow_local in (False, True):
        if url.startswith("http://") and allow_local:
            continue
        with pytest.raises(UnsafeURL, match=reason) as refused:
            check_url(url, allow_local=allow_local, resolve=resolver({}))
        assert refused.value.permanent


def test_public_literal_addresses_pass_as_they_are():
    checked = check_url("https://93.184.215.14:8443/hooks?x=1", resolve=resolver({}))
    assert (checked.scheme, checked.host, checked.port) == ("https", "93.184.215.14", 8443)
    assert checked.addresses == ("93.184.215.14",)
    v6 = check_url("https://[2606:4700::1111]/", resolve=resolver({}))
    assert v6.addresses == ("2606:4700::1111",) and v6.port == 443


def test_a_name_passes_only_if_every_address_is_public():
    table = {
        "hooks.shop.example": ["93.184.215.14", "2606:4700::1111"],
        "mixed.shop.example": ["93.184.215.14", "10.0.0.7"],
        "metadata.shop.example": ["::ffff:169.254.169.254"],
    }
    checked = check_url("https://hooks.shop.example/cmr", resolve=resolver(table))
    assert checked.host == "hooks.shop.example"
    assert checked.addresses == ("93.184.215.14", "2606:4700::1111")
    for name in ("mixed", "metadata"):
        with pytest.raises(UnsafeURL, match="resolves to") as refused:
            check_url(f"https://{name}.shop.example/", resolve=resolver(table))
        # DNS may change: the same URL may pass later.
        assert not refused.value.permanent


def test_a_name_that_does_not_resolve_may_later():
    with pytest.raises(UnsafeURL, match="does not resolve") as refused:
        check_url("https://nothing.invalid/hook")  # the system resolver
    assert not refused.value.permanent
    with pytest.raises(UnsafeURL, match="does not resolve"):
        check_url("https://empty.example/", resolve=lambda host, port: [])


def test_development_allows_http_loopback_and_private_but_never_reserved():
    assert check_url("http://127.0.0.1:8000/hook", allow_local=True).addresses == ("127.0.0.1",)
    assert check_url("http://[::1]:8000/hook", allow_local=True).addresses == ("::1",)
    assert check_url("https://10.0.0.5/hook", allow_local=True).addresses == ("10.0.0.5",)
    localhost = check_url("http://localhost:8000/hook", allow_local=True)  # /etc/hosts
    assert "127.0.0.1" in localhost.addresses and localhost.host == "localhost"
    for url in ("http://169.254.169.254/", "http://0.0.0.0/", "http://[fe80::1]/"):
        with pytest.raises(UnsafeURL, match="reserved"):
            check_url(url, allow_local=True)


def test_without_a_resolver_only_the_form_is_checked():
    checked = check_url("https://hooks.shop.example/cmr", resolve=None)
    assert checked.addresses == ()
    with pytest.raises(UnsafeURL):
        check_url("https://localhost/cmr", resolve=None)
    with pytest.raises(UnsafeURL):
        check_url("https://10.0.0.1/cmr", resolve=None)


def test_the_system_resolver_reads_etc_hosts():
    assert "127.0.0.1" in system_resolver("localhost", 443)
