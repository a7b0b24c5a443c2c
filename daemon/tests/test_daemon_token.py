"""The REST bearer token is compared exactly: near misses (a longer or shorter token, one
character changed, another scheme) are refused; only the scheme's case and surrounding blanks
may differ. (test_daemon_robust.py checks the token policy itself.)"""

import pytest

from kdtest import Daemon

TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tok = tmp_path_factory.mktemp("token") / "token"
    tok.write_text(TOKEN + "\n")
    tok.chmod(0o600)
    d = Daemon(["-api-token", str(tok)])
    yield d
    assert d.stop() == 0


@pytest.mark.parametrize("auth", [
    "Bearer " + TOKEN + "x",            # the token and more
    "Bearer " + TOKEN + TOKEN,
    "Bearer " + TOKEN[:-1],             # all but the last character
    "Bearer " + TOKEN[:-1] + "F",       # the last character changed
    "Bearer X" + TOKEN[1:],             # the first character changed
    "Bearer ",                          # empty
    "Bearer",
    "Basic " + TOKEN,                   # another scheme
    TOKEN,                              # no scheme
])
def test_near_misses_refused(daemon, auth):
    status, _, err = daemon.get("/cfg/nodes", headers={"Authorization": auth})
    assert status == 401
    assert err in ({"error": "invalid bearer token"},
                   {"error": "this request needs a bearer token (Authorization: Bearer <token>)"})


@pytest.mark.parametrize("auth", [
    "Bearer " + TOKEN,
    "bearer " + TOKEN,                  # the scheme is case-insensitive (RFC 7235)
    "Bearer   " + TOKEN + "  ",         # blanks around the token
])
def test_the_token_accepted(daemon, auth):
    assert daemon.get("/cfg/nodes", headers={"Authorization": auth})[0] == 200
