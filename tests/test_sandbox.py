"""The code-test sandbox over real subprocesses: a good answer passes; network, outside files,
subprocesses and runaway time or memory fail cleanly and leave nothing behind."""

from __future__ import annotations

import os
import socket
import threading
import time

from playground.evaluation.graders import grade
from playground.evaluation.sandbox import TIMEOUT_S, net_isolation_prefix, run_code_test, run_python_test

GOOD = "def add(a, b):\n    return a + b\n"
TEST = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


def test_a_correct_answer_passes_and_a_wrong_one_fails_with_the_reason():
    assert run_python_test(GOOD, TEST).passed
    g = run_code_test("def add(a, b):\n    return a - b\n", TEST)
    assert g.status == "fail" and "AssertionError" in g.extracted


def test_the_python_grader_takes_the_last_fenced_block_of_the_answer():
    answer = "Sure!\n```python\ndef add(a, b): return 0\n```\nFixed:\n```python\n" + GOOD + "```\nDone."
    assert grade("python", TEST, answer, run_code=run_code_test).status == "pass"


def test_network_is_refused():
    # A listener on the host: the sandbox must not reach it, by hook or by namespace.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    accepted = []
    srv.settimeout(3)
    t = threading.Thread(target=lambda: accepted.append(_accept(srv)), daemon=True)
    t.start()
    code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
    r = run_python_test(code, "pass")
    t.join()
    srv.close()
    assert not r.passed and "PermissionError" in r.output and "socket" in r.output
    assert accepted == [None]


def _accept(srv):
    try:
        conn, _ = srv.accept()
        conn.close()
        return "connected"
    except OSError:
        return None


def test_the_namespace_alone_has_no_network_where_available():
    if not net_isolation_prefix():
        return  # this machine allows no network namespace: the hook test above is the wall
    import subprocess
    import sys
    code = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', 1), timeout=1)\nexcept OSError as e:\n"
            "    print(type(e).__name__, e.errno)\n")
    out = subprocess.run([*net_isolation_prefix(), sys.executable, "-c", code], capture_output=True, text=True)
    assert "101" in out.stdout or "111" in out.stdout  # ENETUNREACH (no interfaces up) or refused on lo


def test_files_outside_the_folder_are_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    for code in (f"print(open({str(secret)!r}).read())", "open('/etc/passwd').read()",
                 f"open({str(tmp_path / 'planted.txt')!r}, 'w').write('x')",
                 "import os\nos.open('/tmp/pg-escape', os.O_WRONLY | os.O_CREAT)",
                 "open('../escape.txt', 'w').write('x')"):
        r = run_python_test(code, "pass")
        assert not r.passed and "outside the test's folder" in r.output, code
        assert "top secret" not in r.output
    assert not (tmp_path / "planted.txt").exists() and not os.path.exists("/tmp/pg-escape")


def test_writing_inside_its_own_folder_works_and_the_folder_is_thrown_away():
    code = "import os\nopen('scratch.txt', 'w').write('hi')\nprint(os.getcwd())\n"
    r = run_python_test(code, "assert open('scratch.txt').read() == 'hi'")
    assert r.passed
    folder = r.output.strip().splitlines()[0]
    assert folder.startswith("/") and not os.path.exists(folder)


def test_subprocesses_and_ctypes_are_refused():
    for code in ("import os\nos.system('touch /tmp/pg-sys')", "import subprocess\nsubprocess.run(['true'])",
                 "import os\nos.fork()", "import ctypes\nctypes.CDLL(None)"):
        r = run_python_test(code, "pass")
        assert not r.passed and "PermissionError" in r.output, (code, r.output)
    assert not os.path.exists("/tmp/pg-sys")


def test_runaway_time_is_stopped_and_the_group_killed():
    t = time.perf_counter()
    r = run_python_test("while True:\n    pass\n", "pass", timeout_s=1.5)
    assert r.timed_out and not r.passed and time.perf_counter() - t < 1.5 + 2
    g = run_code_test("import time\ntime.sleep(60)\n", "pass")
    assert g.status == "fail" and g.extracted == "timed out"
    assert TIMEOUT_S <= 10


def test_memory_bombs_fail_cleanly():
    r = run_python_test("x = bytearray(4 * 1024**3)\n", "pass")
    assert not r.passed and "MemoryError" in r.output


def test_a_faked_pass_mark_does_not_pass():
    r = run_python_test("print('ok')\nimport os\nos._exit(0)\n", "assert False")
    assert not r.passed and r.returncode == 0
