"""The sandbox: right answers come back typed, hostile programs are contained and reported.

Every hostile test runs under each isolation this machine offers: "rlimit" always, and
"bwrap" where bubblewrap works. The bwrap runs also switch the audit-hook guard off, to show
that the namespaces alone contain the program.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import warnings

import pytest

from fbenv import sandbox
from fbenv.errors import InvalidArgumentError
from fbenv.sandbox import Limits, Outcome, Program, TestCase, plain, run_many, run_tests, same_value

HAS_BWRAP = sandbox._bwrap_status()[0]
MODES = ["rlimit"] + (["bwrap"] if HAS_BWRAP else [])
# (isolation, guard): the guard alone in the fallback; with bwrap, also the namespaces alone
SETUPS = [("rlimit", True)] + ([("bwrap", True), ("bwrap", False)] if HAS_BWRAP else [])
FAST = Limits(cpu_s=3, wall_s=6.0, test_s=0.5)


def setup_id(setup: tuple[str, bool]) -> str:
    return f"{setup[0]}-{'guard' if setup[1] else 'noguard'}"


@pytest.fixture(params=SETUPS, ids=setup_id)
def setup(request: pytest.FixtureRequest) -> tuple[str, Limits]:
    isolation, guard = request.param
    return isolation, Limits(cpu_s=3, wall_s=6.0, test_s=0.5, guard=guard)


ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = [TestCase((i, 2 * i), 3 * i) for i in range(10)]


@pytest.mark.parametrize("isolation", MODES)
def test_correct_program_passes_every_case_with_inputs_and_values(isolation: str) -> None:
    r = run_tests(ADD, "add", ADD_TESTS, isolation=isolation)
    assert r.outcome is Outcome.OK and r.ok and r.isolation == isolation
    assert (r.passed, r.total, r.pass_rate) == (10, 10, 1.0)
    t = r.tests[3]
    assert (t.status, t.args, t.expected, t.actual) == ("pass", (3, 6), 9, 9)


@pytest.mark.parametrize("isolation", MODES)
def test_wrong_values_and_exceptions_are_reported_per_case(isolation: str) -> None:
    code = "def div(a, b):\n    if a > 5:\n        return a - b\n    return a // b\n"
    tests = [TestCase((4, 2), 2), TestCase((1, 0), 0), TestCase((9, 3), 3)]
    r = run_tests(code, "div", tests, isolation=isolation)
    assert r.outcome is Outcome.FAILED and r.passed == 1
    ok, err, wrong = r.tests
    assert ok.passed
    assert err.status == "error" and err.kind == "exception" and err.line == 4
    assert err.error.startswith("ZeroDivisionError")
    assert wrong.status == "fail" and wrong.actual == 6 and wrong.expected == 3
    assert [t.index for t in r.failing] == [1, 2]
    assert r.summary() == {"outcome": "failed", "passed": 1, "total": 3, "isolation": isolation}


@pytest.mark.parametrize("isolation", MODES)
def test_syntax_load_and_missing_function_errors_are_typed(isolation: str) -> None:
    r = run_tests("def f(x)\n    return x\n", "f", [TestCase((1,), 1)], isolation=isolation)
    assert r.outcome is Outcome.SYNTAX_ERROR and r.line == 1 and "SyntaxError" in r.message
    assert r.tests[0].status == "not_run"
    r = run_tests("x = 1 / 0\ndef f(x):\n    return x\n", "f", [TestCase((1,), 1)], isolation=isolation)
    assert r.outcome is Outcome.RUNTIME_ERROR and r.line == 1 and "ZeroDivisionError" in r.message
    r = run_tests("def g(x):\n    return x\n", "f", [TestCase((1,), 1)], isolation=isolation)
    assert r.outcome is Outcome.RUNTIME_ERROR and "no function named 'f'" in r.message


@pytest.mark.parametrize("isolation", MODES)
def test_values_compare_by_value_and_output_is_captured(isolation: str) -> None:
    code = (
        "def f(x):\n"
        "    print('looking at', x)\n"
        "    return (x, [x / 3], {x}, {'k': None})\n"
    )
    tests = [TestCase((1,), [1, (1 / 3,), {1}, {"k": None}]), TestCase((2,), (2, [0.6], {2}, {"k": None}))]
    r = run_tests(code, "f", tests, isolation=isolation)
    assert [t.status for t in r.tests] == ["pass", "fail"]
    assert r.output == "looking at 1\nlooking at 2\n"


def test_plain_and_same_value() -> None:
    assert plain((1, {2, 1}, {3: "a"})) == [1, {"__set__": [1, 2]}, {"__dict__": [[3, "a"]]}]
    assert plain(float("nan")) == {"__float__": "nan"}
    assert same_value(0.1 + 0.2, 0.3) and not same_value(True, 1) and not same_value(1, "1")
    assert same_value([1, 2.0], [1, 2]) and not same_value([1], [1, 1])


# ---------------------------------------------------------------- hostile programs


def test_infinite_loop_times_out(setup: tuple[str, Limits]) -> None:
    isolation, limits = setup
    start = time.monotonic()
    r = run_tests("def f(x):\n    while True:\n        pass\n", "f", [TestCase((1,), 1)] * 3, limits, isolation)
    assert r.outcome is Outcome.TIMEOUT and r.tests[0].kind == "timeout"
    assert time.monotonic() - start < limits.wall_s


def test_loop_that_swallows_the_alarm_is_stopped_by_the_cpu_limit(setup: tuple[str, Limits]) -> None:
    isolation, limits = setup
    code = (
        "def f(x):\n"
        "    while True:\n"
        "        try:\n"
        "            while True:\n"
        "                pass\n"
        "        except BaseException:\n"
        "            pass\n"
    )
    limits = Limits(cpu_s=1, wall_s=4.0, test_s=0.3, guard=limits.guard)
    start = time.monotonic()
    r = run_tests(code, "f", [TestCase((1,), 1)], limits, isolation)
    assert r.outcome is Outcome.TIMEOUT and r.tests[0].status == "not_run"
    assert time.monotonic() - start < limits.wall_s + 2


def test_memory_bomb_is_reported_as_memory(setup: tuple[str, Limits]) -> None:
    isolation, limits = setup
    code = "def f(x):\n    hog = []\n    while True:\n        hog.append(bytearray(10 ** 7))\n"
    # a small address space, so filling it is quick even on a loaded machine
    small = Limits(cpu_s=3, wall_s=6.0, test_s=3.0, memory_mb=160, guard=limits.guard)
    r = run_tests(code, "f", [TestCase((1,), 1)], small, isolation)
    assert r.outcome is Outcome.MEMORY and r.tests[0].kind == "memory"
    # one big allocation fails the same way
    r = run_tests("def f(x):\n    return [0] * (10 ** 10)\n", "f", [TestCase((1,), 1)], limits, isolation)
    assert r.outcome is Outcome.MEMORY


def test_fork_bomb_is_contained(setup: tuple[str, Limits]) -> None:
    isolation, limits = setup
    code = "import os\ndef f(x):\n    while True:\n        os.fork()\n"
    start = time.monotonic()
    r = run_tests(code, "f", [TestCase((1,), 1)], limits, isolation)
    assert not r.ok
    if limits.guard:
        assert r.outcome is Outcome.FORBIDDEN and "os.fork" in r.tests[0].error
    assert time.monotonic() - start < limits.wall_s + 2
    # the host still forks and runs the next program normally
    assert run_tests(ADD, "add", ADD_TESTS[:2], FAST, isolation).ok


def test_socket_to_a_loopback_port_of_the_host_fails(setup: tuple[str, Limits]) -> None:
    isolation, limits = setup
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.setblocking(False)
    port = server.getsockname()[1]
    code = (
        "import socket\n"
        "def f(port):\n"
        "    s = socket.create_connection(('127.0.0.1', port), timeout=0.3)\n"
        "    s.sendall(b'leak')\n"
        "    return 'connected'\n"
    )
    try:
        r = run_tests(code, "f", [TestCase((port,), None)], limits, isolation)
        assert not r.ok and r.tests[0].status == "error" and r.tests[0].actual is None
        if limits.guard:
            assert r.outcome is Outcome.FORBIDDEN
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody ever connected
    finally:
        server.close()


def test_write_outside_the_scratch_dir_fails_and_inside_works(setup, tmp_path) -> None:
    isolation, limits = setup
    target = tmp_path / "pwned.txt"
    code = "def f(path):\n    with open(path, 'w') as fh:\n        fh.write('pwned')\n    return 'wrote'\n"
    shared = os.path.join(tempfile.gettempdir(), "fbenv-sandbox-pwned.txt")  # world-writable on the host
    r = run_tests(code, "f", [TestCase((str(target),), None), TestCase((shared,), None)], limits, isolation)
    assert not r.ok and all(t.status == "error" for t in r.tests)
    assert not target.exists() and not os.path.exists(shared)
    inside = (
        "import os\n"
        "def f(name):\n"
        "    with open(name, 'w') as fh:\n"
        "        fh.write('scratch')\n"
        "    return open(os.path.join(os.getcwd(), name)).read()\n"
    )
    assert run_tests(inside, "f", [TestCase(("notes.txt",), "scratch")], limits, isolation).ok


def test_host_environment_variables_are_invisible(setup, monkeypatch) -> None:
    isolation, limits = setup
    monkeypatch.setenv("FBENV_SANDBOX_SECRET", "hunter2")
    code = "import os\ndef f(name):\n    return os.environ.get(name)\n"
    r = run_tests(code, "f", [TestCase(("FBENV_SANDBOX_SECRET",), None)], limits, isolation)
    assert r.ok and r.tests[0].actual is None
    keys = run_tests("import os\ndef f():\n    return sorted(os.environ)\n", "f", [TestCase((), [])],
                     limits, isolation).tests[0].actual
    assert "FBENV_SANDBOX_SECRET" not in keys and set(keys) <= {"PATH", "HOME", "TMPDIR", "LANG",
                                                                 "PYTHONHASHSEED", "PWD", "LC_CTYPE"}


def test_deep_recursion_is_an_error_or_a_contained_crash(setup) -> None:
    isolation, limits = setup
    code = "def f(n):\n    return f(n + 1) + 1\n"
    r = run_tests(code, "f", [TestCase((0,), 0)], limits, isolation)
    assert r.outcome is Outcome.FAILED and r.tests[0].kind == "recursion" and r.tests[0].line == 2
    # with the interpreter's own guard lifted, frames pile up until a limit stops them
    # (the alarm, the address space, or the C stack: a crash), and the host goes on
    lifted = "import sys\nsys.setrecursionlimit(10 ** 7)\n" + code
    small = Limits(cpu_s=2, wall_s=6.0, test_s=0.5, memory_mb=160, guard=limits.guard)
    r = run_tests(lifted, "f", [TestCase((0,), 0)], small, isolation)
    assert r.outcome in (Outcome.CRASHED, Outcome.MEMORY, Outcome.FAILED, Outcome.TIMEOUT) and not r.ok
    assert run_tests(ADD, "add", ADD_TESTS[:1], FAST, isolation).ok


@pytest.mark.parametrize("how", ["print", "fd"])
def test_100_mb_of_output_is_capped(setup, how: str) -> None:
    isolation, limits = setup
    body = "print('x' * 10 ** 8)" if how == "print" else "import os\n    os.write(1, b'x' * 10 ** 8)"
    code = f"def f(x):\n    {body}\n    return x\n"
    r = run_tests(code, "f", [TestCase((1,), 1)], limits, isolation)
    assert r.outcome is Outcome.OUTPUT_LIMIT
    assert len(r.output) <= limits.output_kb * 1024


# ---------------------------------------------------------------- batching, determinism, fallback


@pytest.mark.parametrize("isolation", MODES)
def test_run_many_batches_programs_and_a_crash_stops_the_rest(isolation: str) -> None:
    crash = "import os\ndef f(x):\n    os._exit(3)\n"
    programs = [Program(ADD, "add", tuple(ADD_TESTS[:2])), Program("def add(a, b):\n    return 0\n", "add",
                tuple(ADD_TESTS[:2])), Program(crash, "f", (TestCase((1,), 1),)), Program(ADD, "add", (ADD_TESTS[0],))]
    ok, wrong, crashed, after = run_many(programs, isolation=isolation)
    assert ok.ok and wrong.outcome is Outcome.FAILED
    assert crashed.outcome is Outcome.CRASHED and "exit 3" in crashed.message
    assert after.outcome is Outcome.CRASHED and after.message.startswith("not run")


@pytest.mark.parametrize("isolation", MODES)
def test_runs_are_deterministic(isolation: str) -> None:
    code = "def f(words):\n    return list({w: len(w) for w in set(words)})\n"
    tests = [TestCase((["pear", "fig", "kiwi", "plum", "date"],), [])]
    first, second = (run_tests(code, "f", tests, isolation=isolation) for _ in range(2))
    assert first == second


def test_missing_bwrap_falls_back_loudly(monkeypatch) -> None:
    monkeypatch.setattr(sandbox, "_bwrap_status", lambda: (False, "bwrap is not installed"))
    monkeypatch.setattr(sandbox, "_warned", False)
    with pytest.warns(RuntimeWarning, match="falling back to rlimits"):
        r = run_tests(ADD, "add", ADD_TESTS[:2])
    assert r.ok and r.isolation == "rlimit"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        assert run_tests(ADD, "add", ADD_TESTS[:1]).isolation == "rlimit"
    with pytest.raises(InvalidArgumentError, match="not installed"):
        run_tests(ADD, "add", ADD_TESTS[:1], isolation="bwrap")


def test_a_bwrap_that_cannot_make_namespaces_is_detected(monkeypatch, tmp_path) -> None:
    # what a locked-down container answers; the probe must see it, not the first real run
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    sandbox._bwrap_path.cache_clear()
    sandbox._bwrap_status.cache_clear()
    try:
        works, why = sandbox._bwrap_status()
        assert not works and "No permissions to create new namespace" in why
    finally:
        sandbox._bwrap_path.cache_clear()
        sandbox._bwrap_status.cache_clear()


def test_bad_arguments_raise_typed_errors() -> None:
    with pytest.raises(InvalidArgumentError):
        Limits(cpu_s=0)
    with pytest.raises(InvalidArgumentError):
        Limits(wall_s=-1.0)
    with pytest.raises(InvalidArgumentError):
        run_tests(ADD, "not a name", ADD_TESTS[:1])
    with pytest.raises(KeyError):
        run_tests(ADD, "add", ADD_TESTS[:1], isolation="docker")


def test_measure_ms_returns_a_sane_median() -> None:
    ms = sandbox.measure_ms(runs=3)
    assert isinstance(ms, float) and 0 < ms < 60_000


def test_no_sandbox_process_outlives_its_run(setup) -> None:
    # a child that leaves the process group and sleeps on, while the harness returns
    isolation, limits = setup
    code = ("import os, time\ndef f(x):\n    if os.fork() == 0:\n        os.setsid()\n"
            "        time.sleep(30)\n    time.sleep(0.3)\n    return x\n")
    r = run_tests(code, "f", [TestCase((1,), 1)], limits, isolation)
    assert r.ok is (not limits.guard)  # the guard refuses the fork; otherwise it happened
    time.sleep(0.2)
    assert _harness_processes() == []


def _harness_processes() -> list[int]:
    """Live sandbox processes: nobody's python when we are root, else by the harness's marker."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as fh:
                status = dict(line.split(":", 1) for line in fh if ":" in line)
            if status["State"].split()[0] in ("Z", "X"):
                continue
            if os.geteuid() == 0:
                if int(status["Uid"].split()[0]) == sandbox.NOBODY and "python" in status["Name"]:
                    found.append(int(pid))
            else:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if b"fbenv sandbox harness" in fh.read():
                        found.append(int(pid))
        except (OSError, KeyError, ValueError):
            pass
    return found
