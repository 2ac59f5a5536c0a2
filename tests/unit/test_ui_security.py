"""Who may see the page and press its buttons."""

from __future__ import annotations

import pytest

from workflows_tick.errors import UsageError
from workflows_tick.ui.security import Guard, check_exposure, host_name, is_loopback, safe_next


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.com", "localhost.evil"])
def test_other_addresses(host: str) -> None:
    assert not is_loopback(host)


def test_a_public_address_needs_a_token_or_insecure() -> None:
    check_exposure("127.0.0.1", None, False)
    check_exposure("0.0.0.0", "token", False)
    check_exposure("0.0.0.0", None, True)
    with pytest.raises(UsageError, match=r"WORKFLOWS_UI_TOKEN.*--insecure"):
        check_exposure("0.0.0.0", None, False)


def test_host_header_names() -> None:
    assert host_name("localhost:8080") == "localhost"
    assert host_name("[::1]:8080") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"


def test_bearer_or_session_cookie_authenticates() -> None:
    guard = Guard(token="tok-123", secret=b"k" * 32, loopback_only=False, allow_actions=False)
    assert guard.authenticated("Bearer tok-123", None)
    assert guard.authenticated(None, guard.session_value())
    assert not guard.authenticated("Bearer tok-12", None)
    assert not guard.authenticated(None, "tok-123")
    assert not guard.authenticated(None, None)
    assert Guard(None, b"k", False, False).authenticated(None, None)


def test_csrf_tokens_are_bound_to_the_process_and_the_session() -> None:
    one = Guard(token="t", secret=b"a" * 32, loopback_only=False, allow_actions=True)
    two = Guard(token="t", secret=b"b" * 32, loopback_only=False, allow_actions=True)
    token = one.csrf_token("session-1")
    assert one.csrf_ok(token, "session-1")
    assert not one.csrf_ok(token, "session-2")
    assert not two.csrf_ok(token, "session-1")
    assert not one.csrf_ok(None, "session-1")


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("/dags/x?run=1", "/dags/x?run=1"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        (None, "/"),
    ],
)
def test_after_login_only_local_paths(target: str | None, safe: str) -> None:
    assert safe_next(target) == safe
