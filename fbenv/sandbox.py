"""Run untrusted Python (an agent's or a simulated student's program) against hidden tests.

One call, :func:`run_tests`, starts ONE interpreter in a separate process, loads the program
into a fresh namespace, calls its entry function once per test case inside that same
interpreter (so ten cases cost one start-up, not ten) and returns a typed
:class:`RunResult`: an :class:`Outcome` for the run and a :class:`TestResult` per case with
its inputs, the expected value, the actual value and any exception. Values are compared by
value in the parent, after both sides go through the same JSON-plain encoding (tuples equal
lists, floats within 1e-9); the expected values never enter the child, so a program that
forges the harness's output still cannot pass a case it does not compute.

Containment, in layers (each catches what the one before may miss):

- **bubblewrap** (``isolation="bwrap"``), where the ``bwrap`` binary exists and works: new
  network, PID, IPC and UTS namespaces (no network at all, not even loopback to the host),
  a root made only of read-only binds of what the interpreter needs, the scratch directory
  as the only writable mount, ``--die-with-parent``, an environment built from nothing.
  As root, no user namespace is made: the harness drops to ``nobody`` itself, because a
  process mapped to host root ignores ``RLIMIT_NPROC`` and a fork bomb would run free.
- **rlimits**, set by the harness on itself before it reads the program: CPU seconds,
  address space, processes, file size, open files, no core dumps; plus a per-case alarm
  and a wall-clock deadline enforced by the parent (it kills the whole process group).
- **an audit hook** (``Limits.guard``, PEP 578) inside the child: process creation,
  sockets, ctypes, rlimit changes and writes outside the scratch directory raise
  ``PermissionError`` and mark the case ``forbidden``. It is what keeps the rlimit-only
  fallback from writing the host's files or reaching its loopback.

Where bwrap is missing or cannot run (some containers forbid namespaces), the sandbox falls
back to rlimits plus the guard, warns once, and says so in ``RunResult.isolation``
(``"rlimit"``): put it in ``info`` so results record how they were produced. Debian and
Ubuntu ship bwrap as ``apt-get install -y bubblewrap``.

Stdout and stderr are captured up to ``Limits.output_kb`` and never read whole: a program
that prints 100 MB is stopped with ``Outcome.OUTPUT_LIMIT``. Runs are deterministic
(``PYTHONHASHSEED=0``, fixed limits, no randomness here); only ``wall_ms`` is a measurement.
:func:`run_many` batches several trusted programs into one interpreter (problem banks and
their tests); :func:`measure_ms` is the median cost of a hidden-test run, for ``fbenv perf``.
"""

from __future__ import annotations

import ast
import functools
import inspect
import marshal
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from fbenv.errors import InvalidArgumentError, check_choice

__all__ = [
    "ISOLATIONS",
    "Limits",
    "Outcome",
    "Program",
    "RunResult",
    "TestCase",
    "TestResult",
    "available_isolation",
    "measure_ms",
    "plain",
    "run_many",
    "run_tests",
    "same_value",
]

ISOLATIONS = ("auto", "bwrap", "rlimit")
NOBODY = 65534  # the uid/gid a root parent's child drops to
_SCRATCH_IN_BWRAP = "/scratch"


class Outcome(str, Enum):
    """How a run ended, worst first when several cases disagree."""

    OK = "ok"  # every case passed
    FAILED = "failed"  # ran, but some case returned a wrong value or raised
    SYNTAX_ERROR = "syntax_error"  # the program does not compile
    RUNTIME_ERROR = "runtime_error"  # loading it raised, or the entry function is missing
    TIMEOUT = "timeout"  # a case hit the per-case alarm, the CPU limit or the wall deadline
    MEMORY = "memory"  # MemoryError under the address-space limit
    OUTPUT_LIMIT = "output_limit"  # printed more than Limits.output_kb
    FORBIDDEN = "forbidden"  # the guard refused a process, socket, ctypes or outside write
    CRASHED = "crashed"  # the interpreter died without reporting (segfault, signal, ...)


# per-case error kinds that override FAILED, in priority order
_KIND_OUTCOME = {
    "output_limit": Outcome.OUTPUT_LIMIT,
    "timeout": Outcome.TIMEOUT,
    "memory": Outcome.MEMORY,
    "forbidden": Outcome.FORBIDDEN,
}


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run. The defaults suit small exercise programs."""

    cpu_s: int = 4  # RLIMIT_CPU of the whole interpreter
    wall_s: float = 8.0  # the parent kills the run after this
    test_s: float = 1.0  # alarm per case (and for loading the program)
    memory_mb: int = 512  # RLIMIT_AS
    processes: int = 64  # RLIMIT_NPROC (counts every process of the child's user)
    file_mb: int = 8  # RLIMIT_FSIZE
    open_files: int = 64  # RLIMIT_NOFILE
    output_kb: int = 64  # captured stdout+stderr; more ends the run with OUTPUT_LIMIT
    # the audit hook (see module docstring). Switch it off only to test the namespaces: under
    # "rlimit" a forked child that calls setsid() would then outlive the run
    guard: bool = True

    def __post_init__(self) -> None:
        for name in ("cpu_s", "memory_mb", "processes", "file_mb", "open_files", "output_kb"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgumentError(f"Limits.{name} expects an int >= 1, actual {value!r}")
        for name in ("wall_s", "test_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise InvalidArgumentError(f"Limits.{name} expects a number > 0, actual {value!r}")


@dataclass(frozen=True)
class TestCase:
    """One hidden test: the entry function is called with ``*args``; ``expected`` is compared by value."""

    __test__ = False  # not a pytest class

    args: tuple[Any, ...]
    expected: Any


@dataclass(frozen=True)
class Program:
    """A program to run: its source, the name of the function the tests call, the tests."""

    code: str
    entry: str
    tests: tuple[TestCase, ...]


@dataclass(frozen=True)
class TestResult:
    """One case: ``status`` is pass, fail (wrong value), error (raised), or not_run."""

    __test__ = False

    index: int
    status: str
    args: tuple[Any, ...]
    expected: Any
    actual: Any = None  # JSON-plain (see plain()); None when the call raised
    error: str | None = None  # "ZeroDivisionError: division by zero"
    kind: str | None = None  # exception, recursion, timeout, memory, forbidden, output_limit
    line: int | None = None  # line of the program where the exception surfaced

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True)
class RunResult:
    """The outcome of running one program on its tests."""

    outcome: Outcome
    tests: tuple[TestResult, ...]
    isolation: str  # "bwrap" or "rlimit": how contained this run was
    message: str = ""  # syntax/load error, or why the run stopped
    line: int | None = None  # the syntax error's or load error's line
    output: str = ""  # captured stdout+stderr of the program, capped
    wall_ms: float = field(default=0.0, compare=False)  # a measurement: keep it out of info

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def total(self) -> int:
        return len(self.tests)

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.tests else 0.0

    @property
    def failing(self) -> tuple[TestResult, ...]:
        return tuple(t for t in self.tests if not t.passed)

    def summary(self) -> dict[str, Any]:
        """A small deterministic record for ``info`` (no timings): outcome, counts, isolation."""
        return {"outcome": self.outcome.value, "passed": self.passed, "total": self.total,
                "isolation": self.isolation}


# ---------------------------------------------------------------- value comparison


def plain(value: Any, _depth: int = 0) -> Any:
    """A JSON-ready copy of a value, the same on both sides of the process boundary.

    Tuples become lists, sets sorted lists under ``{"__set__": ...}``, dicts with non-str
    keys ``{"__dict__": [[k, v], ...]}``, non-finite floats ``{"__float__": "nan"}``,
    anything else ``{"__repr__": repr(value)}`` (so objects compare by their repr).
    """
    if _depth > 50:
        return {"__repr__": "<too deep>"}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value) if abs(value) < 10**300 else {"__repr__": "<huge int>"}
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else {"__float__": repr(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v, _depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [plain(v, _depth + 1) for v in value]
        return {"__set__": sorted(items, key=repr)}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: plain(v, _depth + 1) for k, v in value.items()}
        pairs = [[plain(k, _depth + 1), plain(v, _depth + 1)] for k, v in value.items()]
        return {"__dict__": sorted(pairs, key=repr)}
    try:
        text = repr(value)
    except BaseException:  # a hostile __repr__
        text = f"<{type(value).__name__}>"
    return {"__repr__": text[:200]}


def same_value(actual: Any, expected: Any) -> bool:
    """Equality of two plain values; floats (and ints against floats) within 1e-9."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        if isinstance(expected, int) and isinstance(actual, int):
            return actual == expected
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(actual) == len(expected) and all(same_value(a, e) for a, e in zip(actual, expected))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(same_value(actual[k], expected[k]) for k in expected)
    return type(actual) is type(expected) and actual == expected


# ---------------------------------------------------------------- the harness (runs in the child)

_HARNESS_BODY = r'''
# only builtin or tiny modules: json, signal and traceback would double the start-up time
import sys, os, io, marshal, builtins, resource, _signal

_res = os.dup(1)
os.dup2(2, 1)  # the program's raw fd-1 writes join stderr, which the parent caps
cfg = marshal.loads(sys.stdin.buffer.read())
os.close(0)
if cfg["preload"]:
    # the modules a small exercise imports, loaded while the stdlib is still readable:
    # this child drops to nobody below and may lose read access to a private stdlib
    import math, re, string, collections, itertools, functools, heapq, bisect, operator
    import fractions, decimal, statistics, typing, dataclasses, enum, random, datetime
    import textwrap, unicodedata, array, copyreg, abc, numbers, keyword, socket, encodings.idna
L = cfg["limits"]
def _lim(which, value):
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass
_lim(resource.RLIMIT_CORE, 0)
_lim(resource.RLIMIT_FSIZE, L["file_mb"] << 20)
_lim(resource.RLIMIT_NOFILE, L["open_files"])
_lim(resource.RLIMIT_NPROC, L["processes"])
_lim(resource.RLIMIT_AS, L["memory_mb"] << 20)
try:
    resource.setrlimit(resource.RLIMIT_CPU, (L["cpu_s"], L["cpu_s"] + 1))
except (ValueError, OSError):
    pass
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(cfg["nobody"])
    os.setuid(cfg["nobody"])

def emit(obj):
    data = (repr(obj) + "\n").encode()  # plain data only: the parent reads it with ast.literal_eval
    while data:
        data = data[os.write(_res, data):]

class TimeLimitExceeded(BaseException):
    pass

class OutputLimitExceeded(BaseException):
    pass

class _Capture(io.TextIOBase):
    def __init__(self, cap):
        self.cap, self.parts, self.size = cap, [], 0
    def writable(self):
        return True
    def write(self, s):
        s = str(s)
        self.size += len(s)
        if self.size > self.cap:
            raise OutputLimitExceeded("output over %d characters" % self.cap)
        self.parts.append(s)
        return len(s)
    def take(self):
        text, self.parts = "".join(self.parts), []
        return text

cap = _Capture(L["output_kb"] * 1024)
sys.stdout = sys.stderr = cap
violations = []
SCRATCH = os.path.realpath(cfg["scratch"])

def _inside(path):
    try:
        if isinstance(path, int):
            return True
        path = os.fsdecode(path)
        full = os.path.realpath(path if os.path.isabs(path) else os.path.join(os.getcwd(), path))
        return full == SCRATCH or full.startswith(SCRATCH + os.sep)
    except BaseException:
        return False

_BANNED = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
           "subprocess.Popen", "os.kill", "os.killpg", "os.setuid", "resource.setrlimit",
           "resource.prlimit", "socket.__new__", "socket.connect", "socket.bind",
           "socket.sendto", "socket.sendmsg", "socket.getaddrinfo", "ctypes.dlopen",
           "ctypes.dlsym", "ctypes.cdata", "ctypes.addressof", "sys.addaudithook"}
_PATHS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.truncate", "os.chmod",
          "os.chown", "os.symlink", "os.link", "os.utime", "shutil.rmtree", "shutil.copyfile",
          "shutil.move", "os.chdir"}
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_armed = [False]

def _refuse(event):
    violations.append(event)
    raise PermissionError("sandbox: %s is not allowed" % event)

def _hook(event, args):
    if not _armed[0]:
        return
    if event in _BANNED:
        _refuse(event)
    elif event == "open":
        path, mode, flags = (tuple(args) + (None, None, 0))[:3]
        writing = bool((flags or 0) & _WRITE) or (isinstance(mode, str) and any(c in mode for c in "wax+"))
        if writing and not _inside(path):
            _refuse("writing %s" % (path,))
    elif event in _PATHS:
        if not all(_inside(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
            _refuse(event)

if L["guard"]:
    sys.addaudithook(_hook)

def _alarm(signum, frame):
    raise TimeLimitExceeded("took longer than %ss" % L["test_s"])
_signal.signal(_signal.SIGALRM, _alarm)

def _kind(e):
    if violations:
        return "forbidden"
    if isinstance(e, TimeLimitExceeded):
        return "timeout"
    if isinstance(e, OutputLimitExceeded):
        return "output_limit"
    if isinstance(e, MemoryError):
        return "memory"
    if isinstance(e, RecursionError):
        return "recursion"
    return "exception"

def _line(e):
    line, tb = None, e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<solution>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line

def _describe(e):
    try:
        text = "%s: %s" % (type(e).__name__, e)
    except BaseException:
        text = type(e).__name__
    return text[:300]

def _call(fn, args):
    _signal.setitimer(_signal.ITIMER_REAL, L["test_s"])
    try:
        return fn(*args)
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)

def _encode(value):
    try:
        value = plain(value)
        size = len(repr(value))
    except BaseException:
        return {"__repr__": "<unencodable>"}
    return value if size <= 100000 else {"__too_large__": size}

for i, prog in enumerate(cfg["programs"]):
    violations.clear()
    try:
        code = compile(prog["code"], "<solution>", "exec")
    except (SyntaxError, ValueError) as e:
        emit({"prog": i, "syntax": _describe(e), "line": getattr(e, "lineno", None)})
        continue
    ns = {"__name__": "solution", "__builtins__": builtins}
    _armed[0] = True
    try:
        _call(lambda: exec(code, ns), ())
        fn = ns.get(prog["entry"])
        if not callable(fn):
            raise NameError("no function named %r" % prog["entry"])
    except BaseException as e:
        _armed[0] = False
        emit({"prog": i, "load": _describe(e), "kind": _kind(e), "line": _line(e), "output": cap.take()})
        continue
    for j, args in enumerate(prog["args"]):
        violations.clear()
        _armed[0] = True
        try:
            value = _call(fn, args)
            _armed[0] = False
            out = {"prog": i, "test": j, "actual": _encode(value)}
            if violations:
                out = {"prog": i, "test": j, "error": "sandbox: " + violations[0] + " is not allowed",
                       "kind": "forbidden", "line": None}
        except BaseException as e:
            _armed[0] = False
            out = {"prog": i, "test": j, "error": _describe(e), "kind": _kind(e), "line": _line(e)}
        emit(out)
    _armed[0] = False
    emit({"prog": i, "done": True, "output": cap.take()})
emit({"end": True})
'''


@functools.lru_cache(maxsize=1)
def _harness() -> str:
    # plain() is shared source, so both sides encode values identically
    head = "from __future__ import annotations  # fbenv sandbox harness\n"
    return head + textwrap.dedent(inspect.getsource(plain)) + _HARNESS_BODY


def _interpreter() -> list[str]:
    exe = os.path.realpath(sys.executable)
    flags = ["-s", "-S", "-B"]
    if sys.version_info >= (3, 11):
        flags.append("-P")  # the scratch dir (cwd) does not shadow stdlib modules
    return [exe, *flags, "-c", _harness()]


# ---------------------------------------------------------------- bubblewrap


def _bwrap_prefix(scratch: str, bwrap: str = "bwrap") -> list[str]:
    """bwrap arguments up to the command: read-only system, the interpreter, one writable dir."""
    argv = [bwrap, "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:
        # no user namespace: the harness setuid()s to nobody, so RLIMIT_NPROC binds
        argv += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    else:
        argv += ["--unshare-all"]
    bound: list[str] = []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
            bound.append(top)
    argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    exe = os.path.realpath(sys.executable)
    for path in sorted({os.path.realpath(sys.base_prefix), os.path.dirname(os.path.dirname(exe))}):
        if any(path == b or path.startswith(b + "/") for b in bound):
            continue
        parts = path.strip("/").split("/")
        for k in range(1, len(parts)):  # bwrap makes missing parents 0700: nobody could not enter
            argv += ["--perms", "0755", "--dir", "/" + "/".join(parts[:k])]
        argv += ["--ro-bind", path, path]
        bound.append(path)
    argv += ["--proc", "/proc", "--dev", "/dev", "--bind", scratch, _SCRATCH_IN_BWRAP,
             "--chdir", _SCRATCH_IN_BWRAP, "--clearenv"]
    for key, value in _child_env(_SCRATCH_IN_BWRAP).items():
        argv += ["--setenv", key, value]
    return argv


def _child_env(scratch: str) -> dict[str, str]:
    """The child's whole environment: nothing of the host's."""
    return {"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0"}


@functools.lru_cache(maxsize=1)
def _bwrap_status() -> tuple[bool, str]:
    """Whether bwrap can start the interpreter here (namespaces may be forbidden): (works, why not)."""
    if _bwrap_path() is None:
        return False, "bwrap is not installed (apt-get install -y bubblewrap)"
    scratch = _make_scratch()
    try:
        argv = _bwrap_prefix(scratch, _bwrap_path()) + [os.path.realpath(sys.executable), "-S", "-c", "print('ok')"]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=20, env={}, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, f"bwrap failed to start: {e}"
        if proc.returncode != 0 or proc.stdout.strip() != b"ok":
            err = proc.stderr.decode(errors="replace").strip()[:300]
            return False, f"bwrap cannot run here (exit {proc.returncode}): {err}"
        return True, ""
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def _bwrap_path() -> str | None:
    return shutil.which("bwrap")


_warned = False


def available_isolation(isolation: str = "auto") -> str:
    """The isolation a run with this setting gets: "bwrap" or "rlimit" (warns once on fallback)."""
    global _warned
    isolation = check_choice("isolation", isolation, ISOLATIONS)
    if isolation == "rlimit":
        return "rlimit"
    works, why = _bwrap_status()
    if works:
        return "bwrap"
    if isolation == "bwrap":
        raise InvalidArgumentError(f"isolation='bwrap' was asked for, but {why}")
    if not _warned:
        _warned = True
        warnings.warn(f"fbenv sandbox: {why}; falling back to rlimits and an audit hook only "
                      "(no network or filesystem namespaces). RunResult.isolation is 'rlimit'.",
                      RuntimeWarning, stacklevel=3)
    return "rlimit"


# ---------------------------------------------------------------- running


def _make_scratch() -> str:
    scratch = tempfile.mkdtemp(prefix="fbenv-sandbox-")
    if os.geteuid() == 0:
        os.chown(scratch, NOBODY, NOBODY)
    return scratch


def _check_programs(programs: Sequence[Program]) -> None:
    for p in programs:
        if not isinstance(p, Program):
            raise InvalidArgumentError(f"expects Program records, actual {type(p).__name__}")
        if not isinstance(p.code, str) or not isinstance(p.entry, str):
            raise InvalidArgumentError("Program.code and Program.entry must be str")
        if not p.entry.isidentifier():
            raise InvalidArgumentError(f"Program.entry must be a function name, actual {p.entry!r}")
        if not all(isinstance(t, TestCase) and isinstance(t.args, tuple) for t in p.tests):
            raise InvalidArgumentError("Program.tests must be TestCase records with a tuple of args")


def run_tests(code: str, entry: str, tests: Sequence[TestCase], limits: Limits | None = None,
              isolation: str = "auto") -> RunResult:
    """Run ``code``'s function ``entry`` on every test case in one sandboxed interpreter."""
    return run_many([Program(code, entry, tuple(tests))], limits, isolation)[0]


def run_many(programs: Sequence[Program], limits: Limits | None = None,
             isolation: str = "auto") -> list[RunResult]:
    """Run several programs in ONE interpreter, each in its own namespace, in order.

    For trusted code (a problem bank checking its references and buggy variants): one
    program that crashes the interpreter takes the ones after it down (CRASHED, "not
    run"), and ``limits`` bound the batch as a whole. Agent code goes through
    :func:`run_tests`, one run per program.
    """
    limits = limits or Limits()
    if not isinstance(limits, Limits):
        raise InvalidArgumentError(f"limits expects a Limits record, actual {type(limits).__name__}")
    _check_programs(programs)
    mode = available_isolation(isolation)
    scratch = _make_scratch()
    try:
        payload = {
            "limits": {k: getattr(limits, k) for k in ("cpu_s", "memory_mb", "processes", "file_mb",
                                                        "open_files", "output_kb", "guard", "test_s")},
            "nobody": NOBODY,
            # bwrap makes the interpreter's tree world-readable; a root rlimit child may not read it
            "preload": mode == "rlimit" and os.geteuid() == 0,
            "scratch": _SCRATCH_IN_BWRAP if mode == "bwrap" else scratch,
            "programs": [{"code": p.code, "entry": p.entry, "args": [plain(list(t.args)) for t in p.tests]}
                         for p in programs],
        }
        if mode == "bwrap":
            argv, env, cwd = _bwrap_prefix(scratch, _bwrap_path() or "bwrap") + _interpreter(), {}, scratch
        else:
            argv, env, cwd = _interpreter(), _child_env(scratch), scratch
        start = time.perf_counter()
        lines, output, stop = _communicate(argv, env, cwd, marshal.dumps(payload), limits)
        wall_ms = (time.perf_counter() - start) * 1000.0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _results(programs, lines, output, stop, mode, wall_ms)


def _communicate(argv: list[str], env: dict[str, str], cwd: str, payload: bytes,
                 limits: Limits) -> tuple[list[dict[str, Any]], str, str]:
    """Feed the payload, read both pipes under caps and a deadline; return (records, output, stop)."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=cwd, start_new_session=True, close_fds=True)
    out_cap = limits.output_kb * 1024
    res_cap = 8 << 20  # the results stream; each value is capped in the child already
    res_buf, out_buf = bytearray(), bytearray()
    stop = ""
    exited = 0.0
    deadline = time.monotonic() + limits.wall_s
    sel = selectors.DefaultSelector()
    try:
        try:
            proc.stdin.write(payload)
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        for stream in (proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)
            sel.register(stream, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                stop = "timeout"
                break
            for key, _ in sel.select(timeout=min(left, 0.1)):
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                if key.fileobj is proc.stdout:
                    res_buf += chunk
                    if len(res_buf) > res_cap:
                        stop = "output_limit"
                else:
                    out_buf += chunk[: max(0, out_cap + 1 - len(out_buf))]
                    if len(out_buf) > out_cap:
                        stop = "output_limit"
            if stop:
                break
            if proc.poll() is not None:
                # the harness is gone; stragglers (forks) must not hold the pipes open
                _kill(proc)
                exited = exited or time.monotonic()
                if time.monotonic() - exited > 0.2:
                    break
    finally:
        sel.close()
        _kill(proc)
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            stream.close()
    rc = proc.returncode
    if not stop and rc:
        # a signal shows as -n from the interpreter, or as 128+n through bwrap's monitor
        sig = -rc if rc < 0 else (rc - 128 if rc > 128 else 0)
        if sig == signal.SIGXCPU:
            stop = "timeout"
        else:
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"exit {rc}"
            stop = f"crashed ({name})"
    records = []
    for raw in bytes(res_buf).splitlines():
        try:
            rec = ast.literal_eval(raw.decode(errors="replace"))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records, out_buf[:out_cap].decode(errors="replace"), stop


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _results(programs: Sequence[Program], records: list[dict[str, Any]], output: str, stop: str,
             mode: str, wall_ms: float) -> list[RunResult]:
    by_prog: dict[int, dict[str, Any]] = {}
    for rec in records:
        i = rec.get("prog")
        if isinstance(i, int) and 0 <= i < len(programs):
            slot = by_prog.setdefault(i, {"tests": {}})
            if "test" in rec and isinstance(rec["test"], int):
                slot["tests"][rec["test"]] = rec
            else:
                slot.update({k: v for k, v in rec.items() if k != "tests"})
    results = []
    stopped_seen = False
    for i, prog in enumerate(programs):
        slot = by_prog.get(i, {"tests": {}})
        prog_output = str(slot.get("output", ""))
        if "syntax" in slot:
            results.append(RunResult(Outcome.SYNTAX_ERROR, _not_run(prog), mode, str(slot["syntax"]),
                                     _line_of(slot), "", wall_ms))
            continue
        if "load" in slot:
            outcome = _KIND_OUTCOME.get(slot.get("kind"), Outcome.RUNTIME_ERROR)
            results.append(RunResult(outcome, _not_run(prog), mode, str(slot["load"]), _line_of(slot),
                                     prog_output, wall_ms))
            continue
        tests = tuple(_test_result(k, t, slot["tests"].get(k)) for k, t in enumerate(prog.tests))
        if "done" in slot:
            results.append(RunResult(_outcome(tests), tests, mode, "", None, prog_output, wall_ms))
            continue
        # the run stopped inside this program, or inside an earlier one
        if stopped_seen:
            outcome, message = Outcome.CRASHED, "not run: an earlier program stopped the sandbox"
        else:
            stopped_seen = True
            outcome, message = _stopped(stop or "crashed (no report)", output)
        results.append(RunResult(outcome, tests, mode, message, None, output[-4096:], wall_ms))
    return results


def _line_of(rec: dict[str, Any]) -> int | None:
    line = rec.get("line")
    return line if isinstance(line, int) and not isinstance(line, bool) else None


def _stopped(stop: str, output: str) -> tuple[Outcome, str]:
    if stop == "timeout":
        return Outcome.TIMEOUT, "the run exceeded its time limit"
    if stop == "output_limit":
        return Outcome.OUTPUT_LIMIT, "the program wrote more output than allowed"
    if "MemoryError" in output:
        return Outcome.MEMORY, "the interpreter ran out of memory"
    return Outcome.CRASHED, f"the interpreter died: {stop.removeprefix('crashed ').strip('()')}"


def _not_run(prog: Program) -> tuple[TestResult, ...]:
    return tuple(TestResult(k, "not_run", tuple(t.args), plain(t.expected)) for k, t in enumerate(prog.tests))


def _test_result(k: int, test: TestCase, rec: dict[str, Any] | None) -> TestResult:
    expected = plain(test.expected)
    args = tuple(test.args)
    if rec is None:
        return TestResult(k, "not_run", args, expected)
    if "error" in rec:
        return TestResult(k, "error", args, expected, None, str(rec["error"]), str(rec.get("kind") or "exception"),
                          _line_of(rec))
    actual = rec.get("actual")
    return TestResult(k, "pass" if same_value(actual, expected) else "fail", args, expected, actual)


def _outcome(tests: tuple[TestResult, ...]) -> Outcome:
    kinds = {t.kind for t in tests if t.status == "error"}
    for kind, outcome in _KIND_OUTCOME.items():
        if kind in kinds:
            return outcome
    return Outcome.OK if all(t.passed for t in tests) else Outcome.FAILED


# ---------------------------------------------------------------- throughput

_PERF_CODE = '''
def digit_sum(n):
    total = 0
    for ch in str(abs(n)):
        total += int(ch)
    return total
'''


def measure_ms(runs: int = 7, tests: int = 10, isolation: str = "auto") -> float:
    """Median wall milliseconds of one hidden-test run: a correct program, ``tests`` cases."""
    from fbenv.errors import check_int

    runs = check_int("runs", runs, minimum=1)
    tests = check_int("tests", tests, minimum=1)
    cases = tuple(TestCase((10**k + 7 * k,), sum(map(int, str(10**k + 7 * k)))) for k in range(tests))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = run_tests(_PERF_CODE, "digit_sum", cases, isolation=isolation)
        times.append((time.perf_counter() - start) * 1000.0)
        if not result.ok:
            raise RuntimeError(f"the sandbox failed its own benchmark: {result.outcome.value} {result.message}")
    times.sort()
    return times[len(times) // 2]
