"""Run a Python test against a model's code answer in a separate, fenced-in process.

Model output is untrusted code. The test runs in a child process that:
- starts with `python -I -S` (no user site, no PYTHON* variables, no site-packages), an empty
  environment and a fresh temporary folder as its working directory, removed afterwards;
- sets its own hard resource limits (address space, CPU seconds, file size, open files, no new
  processes) before anything else runs (no preexec_fn: unsafe in a threaded server), in its own
  session, with a wall-clock timeout that kills the whole process group;
- runs without a network: in its own network namespace (`unshare --net`, or with
  `--map-root-user` where an unprivileged user may make one) when the machine allows it, and
  always behind an audit hook installed before any model code runs, which refuses sockets,
  subprocesses, ctypes, and opening files outside the folder (reads of the standard library
  excepted, which imports need).
An audit hook alone is not a security boundary (CPython's docs say so); the namespace and the
limits are the walls, the hook turns an escape attempt into a clean, explained failure.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass

from playground.evaluation.graders import Grade

# Named limits of one code test.
TIMEOUT_S = 5.0  # wall clock, includes interpreter start-up (~30 ms)
CPU_SECONDS = 5
MEMORY_BYTES = 512 * 1024 * 1024  # address space: Python itself needs ~20 MB
FILE_BYTES = 1024 * 1024  # largest file the test may write in its folder
OPEN_FILES = 64
OUTPUT_CHARS = 2000  # of stdout/stderr kept for the detail line
MAX_CODE_CHARS = 100_000

# Runs inside the child before the answer and the test. Kept free of imports beyond the
# standard library's builtins, and installed first, so nothing the model wrote runs unguarded.
_RUNNER = r'''
import os, sys, resource
# 1) limits first, set by the child on itself: hard limits an unprivileged process cannot raise back.
_as, _cpu, _fsize, _nofile = (int(x) for x in sys.argv[1:5])
for _what, _value in ((resource.RLIMIT_AS, _as), (resource.RLIMIT_CPU, _cpu), (resource.RLIMIT_FSIZE, _fsize),
                      (resource.RLIMIT_NOFILE, _nofile), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, 0)):
    resource.setrlimit(_what, (_value, _value))
# 2) then the audit hook, before any model code exists in this process.
_root = os.path.realpath(os.getcwd())
_stdlib = tuple(os.path.realpath(p) for p in sys.argv[5:] if p)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
            "os.forkpty", "pty.", "ctypes.", "os.kill", "os.killpg", "signal.pthread_kill", "resource.setrlimit",
            "resource.prlimit", "os.chdir", "os.chroot", "os.symlink", "os.link", "shutil.", "webbrowser.",
            "sys.remote_exec", "mmap.", "sys._getframe", "sys._current_frames")
def _refuse(what):
    raise PermissionError("sandbox: " + what + " is not allowed in a code test")
def _hook(event, args):
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int):
            return
        real = os.path.realpath(os.fsdecode(path))
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
        inside = real == _root or real.startswith(_root + os.sep)
        if not (inside or (real.startswith(_stdlib) and not writing)):
            _refuse("opening " + real + " (outside the test's folder)")
    elif event.startswith(_BLOCKED):
        _refuse(event)
sys.addaudithook(_hook)
del _hook
def _main():
    # The pass mark is a nonce read from stdin into a local before model code runs: an answer that
    # prints a mark and exits early (os._exit(0)) cannot fake a pass.
    nonce = sys.stdin.readline().strip()
    sys.stdin.close()
    ns = {"__name__": "__main__"}
    with open("answer.py", encoding="utf-8") as f:
        answer = f.read()
    with open("test.py", encoding="utf-8") as f:
        test = f.read()
    # 3) the answer, then the test, in one namespace: the test calls what the answer defined.
    exec(compile(answer, "answer.py", "exec"), ns)
    exec(compile(test, "test.py", "exec"), ns)
    sys.stdout.flush()
    print("\n" + nonce)
_main()
'''


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    returncode: int | None
    timed_out: bool
    output: str
    seconds: float
    isolated_network: bool


@functools.cache
def net_isolation_prefix() -> tuple[str, ...]:
    """The command prefix that gives the child an empty network namespace here, or () when this
    machine allows none (checked once: `unshare --net` as root, `--map-root-user` otherwise)."""
    exe = shutil.which("unshare")
    if exe is None:
        return ()
    for prefix in ((exe, "--net"), (exe, "--net", "--map-root-user")):
        try:
            ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=5).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return prefix
    return ()


def _stdlib_paths() -> list[str]:
    paths = sysconfig.get_paths()
    return sorted({paths["stdlib"], paths["platstdlib"], os.path.dirname(os.__file__)})


def run_python_test(code: str, test: str, *, timeout_s: float = TIMEOUT_S) -> SandboxResult:
    """Run `code` then `test` in one namespace in the sandbox; passed when both ran to the end."""
    if len(code) > MAX_CODE_CHARS or len(test) > MAX_CODE_CHARS:
        return SandboxResult(False, None, False, f"code over {MAX_CODE_CHARS:,} characters (MAX_CODE_CHARS)",
                             0.0, False)
    prefix = net_isolation_prefix()
    with tempfile.TemporaryDirectory(prefix="pg-sandbox-") as folder:
        for name, text in (("answer.py", code), ("test.py", test)):
            with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
                f.write(text)
        limits = (MEMORY_BYTES, CPU_SECONDS, FILE_BYTES, OPEN_FILES)
        cmd = [*prefix, sys.executable, "-I", "-S", "-B", "-c", _RUNNER, *map(str, limits), *_stdlib_paths()]
        nonce = secrets.token_hex(16)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=folder, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
        timed_out = False
        try:
            out, _ = proc.communicate(nonce.encode() + b"\n", timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            out, _ = proc.communicate()
        finally:
            _kill_group(proc)  # anything the test left behind in its group goes too
        seconds = time.perf_counter() - t0
    text = out.decode("utf-8", "replace")
    passed = not timed_out and proc.returncode == 0 and text.rstrip().endswith(nonce)
    text = text.replace(nonce, "").rstrip()
    return SandboxResult(passed, proc.returncode, timed_out, text[-OUTPUT_CHARS:], seconds, bool(prefix))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_code_test(code: str, test: str) -> Grade:
    """The python grader: pass when the test ran to the end; else fail with the last error line."""
    r = run_python_test(code, test)
    if r.passed:
        return Grade("pass", "tests passed", f"ran in {r.seconds:.2f} s")
    if r.timed_out:
        return Grade("fail", "timed out", f"stopped after {TIMEOUT_S:g} s (TIMEOUT_S)")
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else f"exit status {r.returncode}"
    if r.returncode is not None and r.returncode < 0:
        last = f"killed by signal {-r.returncode} (a limit: CPU {CPU_SECONDS} s or memory)"
    return Grade("fail", last[:200], r.output[-OUTPUT_CHARS:])
