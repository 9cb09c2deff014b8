"""The sandbox against hostile programs: each is contained, reported with a status, and changes nothing outside.

Real compilers and interpreters, real namespaces and limits; no mocks. Wall limits are kept short so the
hostile cases cost seconds, not minutes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mcqa import sandbox
from mcqa.sandbox import Limits, RunResult, missing_toolchain, run_program

FAST = Limits(cpu_seconds=1, wall_seconds=3.0, memory_mb=256, processes=32, file_mb=1)


def needs(language: str) -> None:
    reason = missing_toolchain(language)
    if reason:
        pytest.skip(f"{language}: {reason}")


def run(source: str, language: str = "python", limits: Limits = FAST, **kw) -> RunResult:
    needs(language)
    result = run_program(source, language, limits, **kw)
    if result.status == "skipped":
        pytest.skip(f"the kernel refuses the sandbox here: {result.reason}")
    return result


def test_plain_programs_run_in_every_language():
    assert run("print(6 * 7)").stdout == "42\n"
    assert run('#include <stdio.h>\nint main(){ printf("%d\\n", 6 * 7); return 0; }', "c").stdout == "42\n"
    assert run("#include <iostream>\nint main(){ std::cout << 6 * 7 << std::endl; }", "cpp").stdout == "42\n"
    java = "public class Answer { public static void main(String[] a) { System.out.println(6 * 7); } }"
    result = run(java, "java", Limits(wall_seconds=10), main_class="Answer")
    assert (result.status, result.stdout) == ("ok", "42\n")


def test_compile_errors_and_runtime_errors_are_told_apart():
    broken = run("int main(){ return undeclared; }", "c")
    assert broken.status == "compile_error" and "undeclared" in broken.stderr
    crash = run("int main(){ int *p = 0; return *p; }", "c")
    assert crash.status == "runtime_error" and crash.exit_code != 0
    raised = run("raise ValueError('boom')")
    assert raised.status == "runtime_error" and "ValueError: boom" in raised.stderr


def test_compile_only_runs_nothing():
    marker = "print('ran')\n"
    assert run(marker, compile_only=True).status == "ok" and run(marker, compile_only=True).stdout == ""
    assert run("def broken(:\n", compile_only=True).status == "compile_error"
    assert run('#include <stdio.h>\nint main(){ puts("ran"); return 1; }', "c", compile_only=True).stdout == ""
    assert run("int main(){ return undeclared; }", "c", compile_only=True).status == "compile_error"


def test_infinite_loop_stops_at_the_cpu_limit():
    # a wall limit far above the CPU limit, so the CPU limit stops it first even on a busy machine
    result = run("while True:\n    pass", limits=Limits(cpu_seconds=1, wall_seconds=30))
    assert result.status == "timeout" and "CPU" in result.reason
    assert result.seconds < 30


def test_sleeping_program_stops_at_the_wall_limit():
    result = run("import time\ntime.sleep(60)", limits=Limits(wall_seconds=1.5))
    assert result.status == "timeout" and "wall" in result.reason
    assert result.seconds < 4


def test_ten_gigabytes_are_refused():
    assert run("x = bytearray(10 * 1024 ** 3)\nprint('allocated')").status == "memory"
    c = run(
        "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
        'int main(){ char *p = malloc(10UL << 30); if (!p) { puts("refused"); return 0; }'
        ' memset(p, 1, 10UL << 30); puts("allocated"); return 0; }',
        "c",
    )
    assert c.stdout == "refused\n"


def _sandbox_processes(marker: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if marker in line and "ps -eo" not in line]


def test_fork_bomb_is_contained_and_leaves_no_process():
    marker = "forkbomb-marker-31"
    result = run(
        f"import os\nMARK = '{marker}'\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    )
    assert result.status == "timeout"
    time.sleep(0.3)
    assert _sandbox_processes(marker) == []
    c = run("#include <unistd.h>\nint main(){ for(;;) fork(); }", "c")
    assert c.status == "timeout"


def test_a_detached_child_dies_with_the_run():
    marker = "daemon-marker-31"
    result = run(
        f"import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    sys.argv.append('{marker}')\n"
        f"    time.sleep(30)\nprint('{marker}')"
    )
    assert result.status == "ok"
    time.sleep(0.3)
    assert _sandbox_processes(marker) == []


def test_output_flood_is_cut(tmp_path):
    result = run("while True:\n    print('x' * 1000)")
    assert result.status == "output_limit"
    assert len(result.stdout) <= FAST.output_chars
    c = run('#include <stdio.h>\nint main(){ for(;;) fputs("yyyyyyyyyyyyyyyyyyyy", stdout); }', "c")
    assert c.status == "output_limit"


def test_writes_outside_the_folder_change_nothing(tmp_path):
    target = tmp_path / "outside"
    target.mkdir()
    os.chmod(tmp_path, 0o777)
    os.chmod(target, 0o777)  # even a folder anyone may write to stays untouched
    tmp_file = Path("/tmp") / f"mcqa-sandbox-escape-{os.getpid()}"
    program = (
        f"import os\nfor path in ['{target}/written', '{tmp_file}', '/var/tmp/escape-{os.getpid()}', "
        f"'{Path.cwd()}/escape']:\n"
        "    try:\n        open(path, 'w').write('x')\n        print('wrote', path)\n"
        "    except OSError as exc:\n        print('refused', path, type(exc).__name__)\n"
        "open('inside.txt', 'w').write('fine')\nprint(open('inside.txt').read())"
    )
    result = run(program)
    assert result.status == "ok" and result.stdout.rstrip().endswith("fine")
    assert list(target.iterdir()) == []
    assert not tmp_file.exists() and not Path(f"/var/tmp/escape-{os.getpid()}").exists()
    assert not (Path.cwd() / "escape").exists()


def test_home_is_not_readable(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    secret = home / "secret.txt"
    secret.write_text("token-31")
    for path in (tmp_path, home, secret):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)  # readable by anyone: only the sandbox hides it
    monkeypatch.setenv("HOME", str(home))
    result = run(f"try:\n    print(open('{secret}').read())\nexcept OSError as exc:\n    print(type(exc).__name__)")
    assert "token-31" not in result.stdout
    assert result.stdout.strip() in ("FileNotFoundError", "PermissionError")


def test_no_network_not_even_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(4)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    waiter = threading.Thread(target=accept)
    waiter.start()
    program = (
        "import socket\nfor host, port in [('127.0.0.1', {port}), ('10.255.255.1', 80), ('8.8.8.8', 53)]:\n"
        "    s = socket.socket()\n    s.settimeout(1)\n    try:\n        s.connect((host, port))\n"
        "        print('connected', host)\n    except OSError as exc:\n        print('refused', host)\n"
    )
    result = run(program.replace("{port}", str(port)))
    waiter.join()
    server.close()
    assert result.stdout.count("refused") == 3 and "connected" not in result.stdout
    assert accepted == []


def test_environment_is_cleared(monkeypatch):
    monkeypatch.setenv("MCQA_SECRET_TOKEN", "t0k3n")
    result = run("import os\nprint(sorted(os.environ))\nprint(os.environ.get('MCQA_SECRET_TOKEN'))")
    assert "MCQA_SECRET_TOKEN" not in result.stdout and "t0k3n" not in result.stdout


def test_missing_toolchain_or_language_is_a_counted_skip(tmp_path, monkeypatch):
    result = run_program("print(1)", "cobol")
    assert result.status == "skipped" and "cobol" in result.reason
    monkeypatch.setattr(sandbox, "PATH", str(tmp_path))  # a machine with no compilers on its PATH
    result = run_program("int main(){return 0;}", "c")
    assert result.status == "skipped" and "gcc" in result.reason


UNDO_MOUNTS = (
    "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "print(libc.umount2(b'/tmp', 2), libc.mount(None, b'/', None, 32, None), os.getuid())"
)


def test_the_program_cannot_undo_the_mounts():
    """No capability survives into the program: unmounting the /tmp cover or remounting / (MS_REMOUNT) fails."""
    assert run(UNDO_MOUNTS).stdout.split() == ["-1", "-1", "65534"]


def test_root_of_a_user_namespace_gets_the_same_sandbox(tmp_path):
    """Inside `unshare -r` (root of a user namespace, as CI's offline stage runs) the real `nobody` is not
    mapped: the program runs as `nobody` of a nested user namespace, still without capabilities."""
    needs("python")
    script = (
        "import json, sys\nfrom mcqa.sandbox import Limits, run_program\nfast = Limits(cpu_seconds=1, "
        "wall_seconds=3)\nout = [run_program(src, 'python', fast) for src in sys.argv[1:]]\n"
        "print(json.dumps([[r.status, r.stdout] for r in out]))"
    )
    escape = f"open('{tmp_path}/written', 'w').write('x')"
    os.chmod(tmp_path, 0o777)
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("user namespaces are not available here")
    done = subprocess.run(
        ["unshare", "-rn", sys.executable, "-c", script, UNDO_MOUNTS, escape, "while True:\n    pass"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    results = json.loads(done.stdout)
    if results[0][0] == "skipped":
        pytest.skip("the kernel refuses nested namespaces here")
    assert results[0] == ["ok", "-1 -1 65534\n"]
    assert results[1][0] == "runtime_error" and not (tmp_path / "written").exists()
    assert results[2][0] == "timeout"
