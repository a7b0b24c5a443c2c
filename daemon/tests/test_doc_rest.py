"""doc/REST.md runs: every ```sh block (one command) and the ```python websocket
client are run in document order against a daemon loaded with the cluster4
fixture, with $KD set to its REST address. Each must exit 0; where the doc shows
a ```json answer the output must parse as JSON and carry the documented keys;
where it shows a ```text answer, the header or metric names listed must appear."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from kdtest import FIXTURES, SELF_ID, Daemon

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "doc", "REST.md")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.S | re.M)


def doc_examples():
    """[(kind, code, answer_kind, answer)]: each sh/python block with the block after it."""
    with open(DOC) as f:
        blocks = [(m.group(1), m.group(2)) for m in FENCE.finditer(f.read())]
    examples = []
    for i, (kind, code) in enumerate(blocks):
        if kind not in ("sh", "python"):
            continue
        following = blocks[i + 1] if i + 1 < len(blocks) else ("", "")
        answer_kind, answer = following if following[0] in ("json", "text") else ("", "")
        examples.append((kind, code, answer_kind, answer))
    return examples


EXAMPLES = doc_examples()


def keys_of(value):
    """The keys a documented answer promises: an object's, or the first item's of an array."""
    if isinstance(value, list):
        return keys_of(value[0]) if value else set()
    return set(value) - {"..."} if isinstance(value, dict) else set()


def text_names(answer):
    """From a ```text answer: header names ("Allow:") or metric names ('x{...} 1', 'x 1')."""
    names = []
    for line in answer.splitlines():
        line = line.strip()
        if line:
            names.append(re.split(r"[ {:]", line, maxsplit=1)[0])
    return names


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    state = tmp_path_factory.mktemp("doc") / "state.json"
    shutil.copy(os.path.join(FIXTURES, "cluster4.json"), state)
    d = Daemon(["-id", SELF_ID, "-state", str(state), "-ip", "127.0.0.1"])
    yield d
    assert d.stop() == 0


def test_doc_has_examples():
    kinds = [e[0] for e in EXAMPLES]
    assert kinds.count("sh") >= 20 and kinds.count("python") == 1
    # Every SPEC 9.2 route and the new ones appear in a runnable example.
    commands = "\n".join(e[1] for e in EXAMPLES)
    for route in ("/cfg/nodes", "/dsc/nodes", "/cfg/node/", "/dsc/node/", "/graph/json",
                  "/json", "/path", "/mutations", "/sme/freeze", "/sme/thaw", "/sme/frozen",
                  "/enumerables", "/ws", "/metrics", "PATCH", "DELETE", "OPTIONS"):
        assert route in commands, route


def test_doc_examples_run(daemon):
    env = dict(os.environ, KD="%s:%d" % (daemon.addr, daemon.port))
    for n, (kind, code, answer_kind, answer) in enumerate(EXAMPLES):
        where = "example %d (%s): %s" % (n, kind, code.strip()[:120])
        argv = ["bash", "-c", code] if kind == "sh" else [sys.executable, "-c", code]
        if kind == "python":
            pytest.importorskip("websocket")
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, "%s\nexit %d\n%s%s" % (where, p.returncode, p.stdout, p.stderr)
        if answer_kind == "json":
            try:
                got = json.loads(p.stdout)
            except ValueError:
                raise AssertionError("%s\noutput is not JSON:\n%s" % (where, p.stdout))
            want = json.loads(answer)
            assert type(got) is type(want), "%s\ngot %s" % (where, p.stdout)
            missing = keys_of(want) - keys_of(got)
            assert not missing, "%s\nkeys %s missing from:\n%s" % (where, sorted(missing),
                                                                    p.stdout)
        elif answer_kind == "text":
            for name in text_names(answer):
                assert name in p.stdout, "%s\n%r missing from:\n%s" % (where, name, p.stdout)
