"""Every command shown in the docs is run, so the docs cannot rot (doc/TESTING.md, "Commands
in the docs").

A command block is a fenced block whose language is `sh` in a markdown file, or a `.nf`/`.fi`
block in a man page's EXAMPLES section. Each runs as one `bash -e -o pipefail` script, in
document order, in a fresh copy of the source tree per document (so whatever a command writes
lands there), with the built kraken-daemon and krakenctl first on PATH. It must exit 0 within
its timeout; where the doc shows its output (a ```text block directly after it), every line of
that block must appear in the output, in order, after normalisation (see `normalise`); a
```json answer directly after it: the output is JSON with the keys shown (`json_matches`).
A ```python block marked `run with python3` is run the same way (doc/REST.md's websocket client).

The other blocks are samples and are not run: ```text, ```json, ```yaml, ```c, ```python,
```lua, ... A code block without a language, in another language, or indented is refused, so
that every block says which it is.

Markers: HTML comments directly above a block (`.\\" doc-test: ...` above `.nf` in a man page),
one directive each:

    <!-- doc-test: not run: REASON -->        reported as a skip with its reason
    <!-- doc-test: requires PATH -->          skip (with the reason) unless BUILD/PATH exists
    <!-- doc-test: substitute OLD => NEW -->  text replacement before running (NEW may use the
                                              environment below: $KD, $ADDR, $N1, $TMPDIR)
    <!-- doc-test: before: SHELL -->          prepared in the same shell before the block
    <!-- doc-test: timeout SECONDS -->        instead of the default 60 s
    <!-- doc-test: until /REGEX/ -->          a command that runs until stopped: passes once
                                              its output matches, then gets SIGINT (Ctrl-C)
    <!-- doc-test: background until /REGEX/ -->  the same, but it keeps running for the
                                              blocks after it, until a block marked
                                              `stop background` or the end of the document
    <!-- doc-test: run with python3 -->       (on a ```python block) run it, as a command

The environment of each block: cwd = the copy of the tree, where `build`, `build-vc` and
`build-bench` are the meson build dir under test; DESTDIR points into a temporary directory
and PKG_CONFIG_PATH/PKG_CONFIG_SYSROOT_DIR, LD_LIBRARY_PATH, PYTHONPATH and LUA_CPATH point at
the prefix installed there; $KD is the REST address of a kraken-daemon started for the
document on tests/fixtures/cluster4.json, $N1 that fixture's node n1, $ADDR a free loopback
address for a daemon a block starts itself, TMPDIR a temporary directory.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "daemon", "tests"))
from kdtest import Daemon, SELF_ID, next_address  # noqa: E402

BUILD = os.path.abspath(os.environ.get("KRAKEN_BUILD", os.path.join(SRC, "build")))
N1 = "4afdefa4-573b-5cfe-a419-c59075cf18a5"     # node n1 of tests/fixtures/cluster4.json


def find_docs():
    """Every markdown file and man page of the tree (build directories aside), README.md first,
    so that a new document is covered without being listed here."""
    found = []
    for d, dirs, files in os.walk(SRC):
        dirs[:] = sorted(x for x in dirs if x not in (".git", "__pycache__", "node_modules")
                         and not (d == SRC and x.startswith("build"))
                         and not os.path.isdir(os.path.join(d, x, "meson-private")))
        found += [os.path.relpath(os.path.join(d, f), SRC) for f in files
                  if f.endswith(".md") or re.search(r"\.[1-8]$", f)]
    return sorted(found, key=lambda p: (p != "README.md", p))


DOCS = find_docs()

# Samples, never run. Any other language (`bash`, `console`, ...) is refused: it would look
# like a command and silently not run.
SAMPLE_LANGUAGES = {"text", "json", "yaml", "c", "python", "lua", "proto", "dot", "diff", "ini"}
DEFAULT_TIMEOUT = 60
STOP_GRACE = 30

FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^\s*(?:<!--|\.\\\")\s*doc-test:\s*(.*?)\s*(?:-->)?\s*$")
LIST_ITEM = re.compile(r"^\s*([-*+]|\d+\.)\s")


class Block:
    def __init__(self, doc, line, lang, text, markers):
        self.doc, self.line, self.lang, self.text, self.markers = doc, line, lang, text, markers
        self.output = None          # (language, text) of the ```text/```json block after it

    @property
    def runnable(self):
        """sh, or a python block marked `run with python3`."""
        return self.lang == "sh" or (self.lang == "python" and "run with python3" in self.markers)

    @property
    def where(self):
        return "%s:%d" % (self.doc, self.line)

    def directives(self, name):
        """The arguments of every marker `name ...` (or `name: ...`) of this block."""
        out = []
        for m in self.markers:
            if m == name or m.startswith(name + " ") or m.startswith(name + ":"):
                out.append(m[len(name):].lstrip(": ").strip())
        return out


def parse_markdown(doc, lines):
    """(blocks, problems): every fenced block with its markers; unlabelled or indented blocks
    are problems."""
    blocks, problems, markers = [], [], []
    i, prev_blank, context_list = 0, True, False
    last_block_end = None
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m:
            indent, lang = len(m.group(1)), m.group(2)
            j = i + 1
            while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
                j += 1
            body = "\n".join(l[indent:] if l[:indent].strip() == "" else l
                             for l in lines[i + 1:j]) + "\n"
            if not lang:
                problems.append("%s:%d: code block without a language: ```sh for commands "
                                "(run by tests/test_doc_commands.py), ```text for output" %
                                (doc, i + 1))
            elif lang != "sh" and lang not in SAMPLE_LANGUAGES:
                problems.append("%s:%d: code block in '%s': ```sh for commands (run by "
                                "tests/test_doc_commands.py), or one of the samples' %s" %
                                (doc, i + 1, lang, ", ".join(sorted(SAMPLE_LANGUAGES))))
            b = Block(doc, i + 1, lang, body, markers)
            if (lang in ("text", "json") and blocks and blocks[-1].runnable and not markers
                    and last_block_end is not None
                    and all(not l.strip() for l in lines[last_block_end + 1:i])):
                blocks[-1].output = (lang, body)
            blocks.append(b)
            markers, last_block_end = [], j
            i, prev_blank = j + 1, False
            continue
        mm = MARKER.match(line)
        if mm and line.lstrip().startswith("<!--"):
            markers.append(mm.group(1))
        elif line.strip():
            if markers and not line.lstrip().startswith("<!--"):
                problems.append("%s:%d: doc-test marker not directly above a code block" %
                                (doc, i))
                markers = []
            indented = line.startswith("    ") or line.startswith("\t")
            if indented and prev_blank and not context_list:
                problems.append("%s:%d: indented code block: fence it, ```sh for commands "
                                "(run by tests/test_doc_commands.py) or ```text for output" %
                                (doc, i + 1))
                while i + 1 < len(lines) and (not lines[i + 1].strip()
                                              or lines[i + 1].startswith("    ")):
                    i += 1
            if not indented:
                context_list = bool(LIST_ITEM.match(line)) or (context_list and not prev_blank)
        prev_blank = not line.strip()
        i += 1
    return blocks, problems


def unroff(text):
    return (text.replace("\\-", "-").replace("\\(aq", "'").replace("\\e", "\\")
            .replace("\\\\", "\\"))


def parse_man(doc, lines):
    """The .nf/.fi blocks of the EXAMPLES section are command blocks."""
    blocks, markers, section = [], [], ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(".SH"):
            section = line[3:].strip().strip('"')
        mm = MARKER.match(line)
        if mm and line.startswith('.\\"'):
            markers.append(mm.group(1))
        elif line.startswith(".nf") and section == "EXAMPLES":
            j = i + 1
            while j < len(lines) and not lines[j].startswith(".fi"):
                j += 1
            blocks.append(Block(doc, i + 1, "sh", unroff("\n".join(lines[i + 1:j])) + "\n",
                                markers))
            markers = []
            i = j
        elif line.strip():
            markers = []
        i += 1
    return blocks, []


def parse(doc):
    with open(os.path.join(SRC, doc)) as f:
        lines = f.read().split("\n")
    return (parse_man if re.search(r"\.\d$", doc) else parse_markdown)(doc, lines)


PARSED = {doc: parse(doc) for doc in DOCS}
COMMANDS = [b for doc in DOCS for b in PARSED[doc][0] if b.runnable]


def normalise(line):
    """Output comparison ignores what differs from run to run: UUIDs, numbers (counts, times,
    addresses, ports: every run of digits, with its decimals) and the amount of blank space."""
    line = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", line)
    line = re.sub(r"\d+(\.\d+)?", "<n>", line)
    return " ".join(line.split())


def output_matches(expected, actual):
    """Every non-blank line of expected ('...' aside) appears in actual, in that order."""
    got = [normalise(l) for l in re.split(r"[\r\n]", actual)]
    k = 0
    for shown in expected.splitlines():
        want = normalise(shown)
        if not want or want == "...":
            continue
        while k < len(got) and got[k] != want:
            k += 1
        if k == len(got):
            return "line %r not in the output (normalised: %r)" % (shown.strip(), want)
        k += 1
    return None


def keys_of(value):
    """The keys a JSON answer carries: an object's, or the first item's of an array."""
    if isinstance(value, list):
        return keys_of(value[0]) if value else set()
    return set(value) - {"..."} if isinstance(value, dict) else set()


def json_matches(expected, actual):
    """A ```json answer: the output is JSON of the same kind (object, array, ...) with every
    key the doc shows (values differ from run to run: ids, times, counters)."""
    try:
        got = json.loads(actual)
    except ValueError:
        return "the output is not JSON"
    want = json.loads(expected)
    if type(got) is not type(want):
        return "a JSON %s, the doc shows a %s" % (type(got).__name__, type(want).__name__)
    missing = keys_of(want) - keys_of(got)
    return "keys %s missing" % sorted(missing) if missing else None


class Run:
    """One block's bash process (own process group), its merged output collected."""

    def __init__(self, block, script, cwd, env):
        self.block = block
        self.proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd,
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.chunks = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in iter(lambda: self.proc.stdout.read1(65536), b""):
            with self.cond:
                self.chunks.append(raw.decode(errors="replace"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def output(self):
        with self.cond:
            return "".join(self.chunks)

    def wait_output(self, rx, timeout):
        """True once the output matches rx; False at the deadline or when the process ended
        without it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not rx.search("".join(self.chunks)):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    return False
                self.cond.wait(min(left, 0.5))
            return True

    def signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self):
        """Ctrl-C to the whole group; None when it stopped within the grace, else why not."""
        self.signal(signal.SIGINT)
        try:
            self.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait()
            return "still running %d s after SIGINT (killed)" % STOP_GRACE
        self.signal(signal.SIGKILL)     # anything the command left behind in its group
        self.reader.join(5)
        return None


FAILED_COMMAND = re.compile(r"^doc-test: exit (\d+) from: (.*)$", re.M)


def failure(block, script, why, out):
    """The report of a broken block: where, why and which command, the end of the output (the
    part a TAP reader sees first), then the whole block as it was run."""
    failed = FAILED_COMMAND.findall(out)
    if failed:
        why += ", from `%s`" % failed[-1][1]
        out = FAILED_COMMAND.sub("", out).rstrip("\n") + "\n"
    if script.startswith("trap "):
        script = script.split("\n", 1)[1]
    tail = out.splitlines()[-12:]
    return "%s: %s\n--- output (last %d lines) ---\n%s\n--- block as run ---\n%s" % (
        block.where, why, len(tail), "\n".join(tail), script)


def fail(block, script, why, out):
    raise AssertionError(failure(block, script, why, out)) from None


def build_option(name):
    with open(os.path.join(BUILD, "meson-info", "intro-buildoptions.json")) as f:
        for o in json.load(f):
            if o["name"] == name:
                return o["value"]
    return None


def interpreter_sanitizer_env():
    """Python and Lua are not built with ASan: in an ASan build, a block that loads the bindings
    gets the ASan runtime preloaded, without leak checks of the interpreter (as the bindings
    suite does)."""
    if "address" not in (build_option("b_sanitize") or ""):
        return {}
    libasan = subprocess.run(["cc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True, check=True).stdout.strip()
    return {"LD_PRELOAD": libasan, "ASAN_OPTIONS": "detect_leaks=0"}


class DocEnv:
    """Per document: a copy of the tree, a DESTDIR, the background commands still running."""

    def __init__(self, doc, tmp):
        self.doc = doc
        self.root = str(tmp)
        self.work = os.path.join(self.root, "src")
        shutil.copytree(SRC, self.work, symlinks=True,
                        ignore=lambda d, names: [n for n in names if n in (".git", "__pycache__")
                                                 or (d == SRC and n.startswith("build"))])
        for name in ("build", "build-vc", "build-bench"):
            os.symlink(BUILD, os.path.join(self.work, name))
        dest = os.path.join(self.root, "destdir")
        tmpdir = os.path.join(self.root, "tmp")
        os.makedirs(tmpdir)
        prefix = dest + build_option("prefix")
        libdir = os.path.join(prefix, build_option("libdir"))
        py = "python3.%d" % sys.version_info.minor
        self.env = dict(os.environ)
        self.env.update({
            "PATH": "%s/daemon:%s/daemon/krakenctl:/usr/bin:/bin:/usr/sbin:/sbin" % (BUILD, BUILD),
            "DESTDIR": dest, "TMPDIR": tmpdir,
            "PKG_CONFIG_PATH": os.path.join(libdir, "pkgconfig"),
            "PKG_CONFIG_SYSROOT_DIR": dest,
            "LD_LIBRARY_PATH": libdir,
            "PYTHONPATH": "%s/lib/%s/dist-packages:%s/lib/python3/dist-packages" % (prefix, py,
                                                                                  prefix),
            "LUA_CPATH": "%s/lib/lua/5.4/?.so;;" % prefix,
            "N1": N1, "ADDR": next_address(),
        })
        for var in ("KRAKEN_API", "KRAKEN_TOKEN", "KRAKEN_BUILD"):  # the caller's, not the doc's
            self.env.pop(var, None)
        self.background = []
        # $KD: a daemon of the document's own on the fixture cluster (what one document's
        # examples change is not another's starting point)
        state = os.path.join(self.root, "kd-state.json")
        shutil.copy(os.path.join(SRC, "tests", "fixtures", "cluster4.json"), state)
        self.kd = Daemon(["-id", SELF_ID, "-state", state])
        self.env["KD"] = "%s:%d" % (self.kd.addr, self.kd.port)

    def close(self):
        """Stop the background commands and the document's daemon: the problems, if any."""
        problems = self.stop_background()
        rc = self.kd.stop()
        if rc != 0:
            problems.append("%s: the $KD daemon exited %d; log:\n%s" % (self.doc, rc,
                                                                       self.kd.log()))
        return problems

    def stop_background(self):
        problems = []
        for run in self.background:
            why = run.stop()
            out = run.output()
            if not why and any(m in out for m in ("runtime error:", "AddressSanitizer")):
                why = "sanitizer report"
            if why:
                problems.append(failure(run.block, run.block.text, why, out))
        self.background = []
        return problems


@pytest.fixture(scope="module")
def envs(tmp_path_factory):
    made = {}

    def get(doc):
        if doc not in made:
            for other in list(made):        # the previous document's commands and daemon
                problems = made.pop(other).close()
                assert not problems, "\n".join(problems)
            made[doc] = DocEnv(doc, tmp_path_factory.mktemp("doc"))
        return made[doc]
    yield get
    problems = [p for e in made.values() for p in e.close()]
    assert not problems, "\n".join(problems)


DIRECTIVES = ("not run:", "requires ", "substitute ", "before:", "timeout ", "until /",
              "background until /", "stop background", "run with python3")


def marker_problems(blocks):
    """A misspelt marker, or one on a sample, would silently do nothing."""
    problems = ["%s: unknown doc-test marker %r (known: %s)" % (b.where, m, ", ".join(DIRECTIVES))
                for b in blocks for m in b.markers
                if not (m.startswith(DIRECTIVES) or m in ("stop background",
                                                          "run with python3"))]
    problems += ["%s: doc-test markers on a %s sample, which is never run" % (b.where, b.lang)
                 for b in blocks if b.markers and not b.runnable]
    return problems


def test_every_block_is_labelled():
    problems = [p for doc in DOCS for p in PARSED[doc][1] + marker_problems(PARSED[doc][0])]
    assert not problems, "\n".join(problems)


def test_docs_have_commands():
    # README's first command is the virtual cluster; the man page has its EXAMPLES.
    firsts = {b.doc: b for b in reversed(COMMANDS)}
    assert "examples/virtual-cluster/run" in firsts["README.md"].text
    assert "daemon/krakenctl/krakenctl.1" in firsts
    assert len(COMMANDS) >= 20


def test_parser_classifies_blocks():
    """The convention itself: what is a command, its output, a marker, and what is refused."""
    doc = ["Intro:", "", "<!-- doc-test: substitute a => b -->", "<!-- doc-test: timeout 5 -->",
           "```sh", "echo a", "```", "", "```text", "a", "```", "", "```json", "{}", "```",
           "", "    indented", "", "```", "bare", "```", "", "- item", "", "    continued", "",
           "<!-- doc-test: not run: x -->", "text after a marker", "", "```bash", "ls",
           "```"]
    blocks, problems = parse_markdown("x.md", doc)
    assert [(b.line, b.lang) for b in blocks] == [(5, "sh"), (9, "text"), (13, "json"),
                                                  (19, ""), (30, "bash")]
    assert blocks[0].markers == ["substitute a => b", "timeout 5"]
    assert blocks[0].directives("substitute") == ["a => b"]
    assert blocks[0].directives("timeout") == ["5"]
    assert blocks[0].output == ("text", "a\n")
    assert problems == [
        "x.md:17: indented code block: fence it, ```sh for commands (run by "
        "tests/test_doc_commands.py) or ```text for output",
        "x.md:19: code block without a language: ```sh for commands (run by "
        "tests/test_doc_commands.py), ```text for output",
        "x.md:27: doc-test marker not directly above a code block",
        "x.md:30: code block in 'bash': ```sh for commands (run by tests/test_doc_commands.py), "
        "or one of the samples' c, diff, dot, ini, json, lua, proto, python, text, yaml"]
    assert marker_problems([Block("x.md", 3, "sh", "ls\n", ["substitue a => b"]),
                            Block("x.md", 9, "text", "a\n", ["timeout 5"])]) == [
        "x.md:3: unknown doc-test marker 'substitue a => b' (known: %s)" % ", ".join(DIRECTIVES),
        "x.md:9: doc-test markers on a text sample, which is never run"]
    man = [".SH OPTIONS", ".nf", "not a command", ".fi", ".SH EXAMPLES",
           '.\\" doc-test: until /x/', ".nf", "krakenctl \\-i h list", ".fi"]
    blocks, _ = parse_man("x.1", man)
    assert [(b.line, b.text, b.markers) for b in blocks] == [
        (7, "krakenctl -i h list\n", ["until /x/"])]


def test_output_normalisation():
    assert normalise("1.8s  SYNC 100/100 |  in flight 0") == "<n>s SYNC <n>/<n> | in flight <n>"
    assert normalise("node 4afdefa4-573b-5cfe-a419-c59075cf18a5 on 127.0.0.1:3141") == \
        "node <uuid> on <n>.<n>:<n>"
    assert output_matches("a 1\n...\nc 2\n", "x\na 7\nb\nc 99\n") is None
    assert output_matches("c 1\na 1\n", "a 1\nc 1\n") == \
        "line 'a 1' not in the output (normalised: 'a <n>')"
    assert json_matches('{"id": 1, "...": 0}', '{"id": 2, "x": 3}') is None
    assert json_matches('[{"id": 1}]', '[{"name": 2}]') == "keys ['id'] missing"
    assert json_matches('{"id": 1}', '[]') == "a JSON list, the doc shows a dict"
    assert json_matches('{}', 'curl: (7) failed') == "the output is not JSON"


def test_rest_reference_covers_every_route():
    """doc/REST.md: every route of SPEC 9.2 and the new ones in a runnable example."""
    rest = [b for b in COMMANDS if b.doc == "doc/REST.md"]
    assert sum(b.lang == "python" for b in rest) == 1     # the websocket client
    commands = "\n".join(b.text for b in rest)
    for route in ("/cfg/nodes", "/dsc/nodes", "/cfg/node/", "/dsc/node/", "/graph/json",
                  "/json", "/path", "/mutations", "/sme/freeze", "/sme/thaw", "/sme/frozen",
                  "/enumerables", "/ws", "/metrics", "PATCH", "DELETE", "OPTIONS"):
        assert route in commands, route


def substituted(block):
    text = block.text
    for sub in block.directives("substitute"):
        old, sep, new = sub.partition(" => ")
        assert sep, "%s: marker 'substitute %s' needs 'OLD => NEW'" % (block.where, sub)
        assert old in text, "%s: substitute: %r is not in the block" % (block.where, old)
        text = text.replace(old, new)
    # -e stops at the first failing command; the trap names it in the output (see failure())
    trap = "trap 'echo \"doc-test: exit $? from: $BASH_COMMAND\" >&2' ERR\n"
    if block.lang == "python":
        text = "python3 - <<'DOC_TEST_PYTHON'\n%sDOC_TEST_PYTHON\n" % text
    return trap + "".join(b + "\n" for b in block.directives("before")) + text


def until_regex(block, spec):
    m = re.match(r"^/(.*)/$", spec)
    assert m, "%s: 'until' needs a /REGEX/, got %r" % (block.where, spec)
    return re.compile(m.group(1), re.M)


@pytest.mark.parametrize("block", COMMANDS, ids=[b.where for b in COMMANDS])
def test_block(block, envs):
    env = envs(block.doc)
    if block.directives("stop background"):
        problems = env.stop_background()
        assert not problems, "\n".join(problems)
    for reason in block.directives("not run"):
        pytest.skip("not run: %s: %s" % (reason, block.text.strip().splitlines()[0]))
    for path in block.directives("requires"):
        if not os.path.exists(os.path.join(BUILD, path)):
            pytest.skip("not run: this build has no %s: %s" %
                        (path, block.text.strip().splitlines()[0]))
    script = substituted(block)
    block_env = env.env
    if block.directives("requires") and any(p.startswith("bindings/")
                                            for p in block.directives("requires")):
        block_env = dict(env.env, **interpreter_sanitizer_env())
    timeouts = block.directives("timeout")
    timeout = float(timeouts[0]) if timeouts else DEFAULT_TIMEOUT
    run = Run(block, script, env.work, block_env)
    untils = block.directives("until") + block.directives("background until")
    if untils:
        rx = until_regex(block, untils[0])
        matched = run.wait_output(rx, timeout)
        if not matched:
            ended = run.proc.poll()
            run.stop()
            why = ("exit %s before its output matched /%s/" % (ended, rx.pattern)
                   if ended is not None else
                   "no output matching /%s/ within %g s" % (rx.pattern, timeout))
            fail(block, script, why, run.output())
        if block.directives("background until"):
            env.background.append(run)
            return
        why = run.stop()
        if why:
            fail(block, script, why, run.output())
        out = run.output()
    else:
        try:
            rc = run.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is None:
            run.stop()
            fail(block, script, "still running after %g s" % timeout, run.output())
        run.reader.join(10)
        out = run.output()
        if rc != 0:
            fail(block, script, "exit status %d" % rc, out)
    for marker in ("runtime error:", "AddressSanitizer", "LeakSanitizer"):
        if marker in out:
            fail(block, script, "sanitizer report", out)
    if block.output is not None:
        lang, shown = block.output
        why = (json_matches if lang == "json" else output_matches)(shown, out)
        if why:
            fail(block, script, "output differs from the doc's: " + why, out)
