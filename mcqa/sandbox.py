"""Run a program that came from data (an item's snippet, a program the model wrote) without trusting it.

Nothing else in mcqa executes text from a dataset; the agent's tool nodes call `run_program` only when
the config turns a tool on. Each run gets:

- no network: a new network namespace, whose loopback is down, so even 127.0.0.1 is unreachable;
- a fresh temporary folder as the only writable place: the world-writable folders (/tmp, /var/tmp,
  /dev/shm, /run/lock) and HOME are covered by small private tmpfs mounts in a new mount namespace,
  every other mount is read-only there, and the program runs as `nobody` (uid 65534: the real one when
  mcqa runs as root, else `nobody` of a new user namespace mapped to the caller's uid), with
  no_new_privs set, so it holds no capability that could undo the mounts;
- its own PID namespace: when the run ends or is killed, every process it started dies with it;
- no shell (the argv is executed directly), a cleared environment, and limits on CPU seconds, wall
  time, address space, processes, file size (which also caps stdout: it is written to a file) and
  open files. RLIMIT_NPROC does not bind root, which is why root drops to `nobody` (FACTS.md).

The isolation is done by a small launcher, this file run as a script by the same interpreter
(`python -I -S sandbox.py SPEC`): it calls unshare(2) and mount(2) through ctypes, forks a PID-1 that
waits, and execs the program in a grandchild with the limits. Where the kernel refuses the namespaces
(some containers), the run is skipped with that reason rather than run unconfined.

Only the standard library is imported here, so the launcher starts in tens of milliseconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

LANGUAGES = ("python", "c", "cpp", "java")
NOBODY = 65534
SKIPPED_EXIT = 97  # the launcher's exit status when the kernel refuses the isolation
TMPFS_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
WORK_MOUNT = "/tmp/sandbox"  # where the run's folder appears inside the namespace
PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class Limits:
    """Per-run limits. Compiling gets `compile_factor` times the CPU and wall seconds."""

    cpu_seconds: int = 2
    wall_seconds: float = 5.0
    memory_mb: int = 512  # address space (RLIMIT_AS); the JVM gets its heap from it (-Xmx)
    processes: int = 64  # RLIMIT_NPROC for the run's user: fork bombs stop here
    file_mb: int = 4  # the largest file the program may write, stdout and stderr included
    output_chars: int = 4000  # how much of stdout / stderr is kept in the result
    compile_factor: int = 5


@dataclass
class RunResult:
    """What one run did. `status`: ok | compile_error | runtime_error | timeout | memory | output_limit | skipped."""

    status: str
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    seconds: float = 0.0
    reason: str = ""
    language: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Step:
    argv: list[str]
    cpu: int
    wall: float
    memory_mb: int
    file_mb: int
    java: bool = False


# -- toolchains ------------------------------------------------------------------------------------


def python_interpreter() -> str:
    """A Python that `nobody` can run: the system's first (the project's venv may live in a private HOME)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3", path=PATH)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return os.path.realpath(sys.executable)


def missing_toolchain(language: str) -> str | None:
    """Why `language` cannot run here (a missing compiler or runtime), or None when it can."""
    needs = {"python": [python_interpreter()], "c": ["gcc"], "cpp": ["g++"], "java": ["javac", "java"]}[language]
    absent = [tool for tool in needs if not tool or not shutil.which(tool, path=PATH)]
    return f"no {', '.join(str(a) for a in absent)} on PATH" if absent else None


def _steps(
    language: str,
    source_name: str,
    limits: Limits,
    flags: tuple[str, ...],
    main_class: str | None,
    memory_mb: int,
    compile_only: bool = False,
) -> list[_Step]:
    """The compile step (if any) and the run step, as argv lists run inside the folder; with
    `compile_only`, the compile step alone (Python's is byte-compiling: a SyntaxError, nothing run)."""
    steps = _all_steps(language, source_name, limits, flags, main_class, memory_mb)
    if not compile_only:
        return steps
    if language == "python":
        run = steps[0]
        return [
            _Step(
                [run.argv[0], "-I", "-S", "-m", "py_compile", source_name],
                run.cpu,
                run.wall,
                run.memory_mb,
                run.file_mb,
            )
        ]
    return steps[:1]


def _all_steps(
    language: str, source_name: str, limits: Limits, flags: tuple[str, ...], main_class: str | None, memory_mb: int
) -> list[_Step]:
    long_cpu, long_wall = limits.cpu_seconds * limits.compile_factor, limits.wall_seconds * limits.compile_factor
    big = max(memory_mb, 1024)  # compilers need more than a snippet does
    if language == "python":
        return [
            _Step(
                [python_interpreter(), "-I", "-S", "-B", source_name],
                limits.cpu_seconds,
                limits.wall_seconds,
                memory_mb,
                limits.file_mb,
            )
        ]
    if language in ("c", "cpp"):
        compiler = _which("gcc" if language == "c" else "g++")
        std = (
            ["-std=gnu99"] if language == "c" else []
        )  # old-style C still compiles; main falling off its end returns 0
        return [
            _Step([compiler, "-w", *std, "-o", "prog", source_name, *flags, "-lm"], long_cpu, long_wall, big, 64),
            _Step(["./prog"], limits.cpu_seconds, limits.wall_seconds, memory_mb, limits.file_mb),
        ]
    # The JVM reserves address space far beyond its heap: the heap is capped by -Xmx, the address space loosely.
    jvm = [
        "-Xss8m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:ReservedCodeCacheSize=32m",
        "-XX:CompressedClassSpaceSize=64m",
        "-Xshare:auto",
    ]
    javac, java = _which("javac"), _which("java")
    return [
        _Step(
            [javac, *(f"-J{o}" for o in jvm), "-J-Xmx512m", "-nowarn", "-encoding", "UTF-8", *flags, source_name],
            long_cpu,
            long_wall,
            4096,
            64,
            java=True,
        ),
        _Step(
            [java, *jvm, f"-Xmx{memory_mb}m", "-cp", ".", main_class or "Main"],
            limits.cpu_seconds,
            limits.wall_seconds,
            memory_mb + 3072,
            limits.file_mb,
            java=True,
        ),
    ]


def _which(tool: str) -> str:
    """`tool`'s path on PATH. run_program asks missing_toolchain first, so the bare name (a program the
    launcher cannot start) is only there to keep argv a list of strings."""
    return shutil.which(tool, path=PATH) or tool


def source_file(language: str, main_class: str | None = None) -> str:
    return {"python": "main.py", "c": "main.c", "cpp": "main.cpp"}.get(language) or f"{main_class or 'Main'}.java"


def host_root() -> bool:
    """Root of the machine (not root of a user namespace, as inside `unshare -r`, nor another user): the
    one case that drops to the real `nobody`; everyone else runs the program as `nobody` of a new user
    namespace, mapped to their own uid."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as handle:
            return handle.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return False


# -- the parent side -------------------------------------------------------------------------------


def run_program(
    source: str,
    language: str,
    limits: Limits | None = None,
    *,
    flags: tuple[str, ...] = (),
    main_class: str | None = None,
    stdin: str = "",
    compile_only: bool = False,
) -> RunResult:
    """Compile (C, C++, Java) and run `source` in the sandbox; never raises for what the program does.

    Java's file is named after `main_class` (default `Main`), the class whose main runs. `compile_only`
    stops after compiling: all a question about whether code compiles needs, and no code of it runs.
    """
    limits = limits or Limits()
    if language not in LANGUAGES:
        return RunResult("skipped", reason=f"language {language!r} not supported", language=language)
    missing = missing_toolchain(language)
    if missing:
        return RunResult("skipped", reason=missing, language=language)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mcqa-sandbox-"))
    try:
        name = source_file(language, main_class)
        (work / name).write_text(source, encoding="utf-8")
        (work / "stdin.txt").write_text(stdin, encoding="utf-8")
        if host_root():  # a new user namespace maps nobody to our own uid instead
            os.chown(work, NOBODY, NOBODY)
            os.chmod(work, 0o700)
        steps = _steps(language, name, limits, flags, main_class, limits.memory_mb, compile_only)
        result = RunResult("ok", language=language)
        for k, step in enumerate(steps):
            result = _run_step(work, step, limits, compiling=k < len(steps) - 1 or compile_only)
            result.language = language
            if result.status != "ok":
                break
        result.seconds = round(time.monotonic() - started, 3)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_step(work: Path, step: _Step, limits: Limits, compiling: bool) -> RunResult:
    spec = {
        "argv": step.argv,
        "work": str(work),
        "cpu": step.cpu,
        "memory_mb": step.memory_mb,
        "processes": limits.processes if not step.java else max(limits.processes, 256),
        "file_mb": step.file_mb,
        "stdin": str(work / "stdin.txt"),
        "home": str(Path.home()),
    }
    with tempfile.TemporaryDirectory(prefix="mcqa-sandbox-out-") as out:
        stdout_path, stderr_path = Path(out) / "stdout", Path(out) / "stderr"
        with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
            launcher = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), json.dumps(spec)],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env={"PATH": PATH, "LANG": "C.UTF-8"},
                start_new_session=True,
            )
            try:
                code = launcher.wait(timeout=step.wall)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(launcher.pid, signal.SIGKILL)  # the PID-1 dies with it, and its namespace's processes
                code, timed_out = launcher.wait(), True
        out_bytes, err_bytes = stdout_path.stat().st_size, stderr_path.stat().st_size
        text = _read(stdout_path, limits.output_chars)
        err = _read(stderr_path, limits.output_chars)
    full = max(out_bytes, err_bytes) >= step.file_mb * 1024 * 1024
    if code == SKIPPED_EXIT and err.startswith("sandbox:"):
        return RunResult("skipped", reason=err.strip(), exit_code=None)
    if timed_out:
        status, reason = "timeout", f"killed after {step.wall:g} s of wall time"
    elif code == 0:
        status, reason = "ok", ""
    elif compiling:
        status, reason = "compile_error", f"compiler exited with {code}"
    elif full or code == 128 + signal.SIGXFSZ:
        status, reason = "output_limit", f"output reached {step.file_mb} MB"
    elif code in (128 + signal.SIGXCPU, 128 + signal.SIGKILL) and not compiling:
        status, reason = "timeout", f"CPU limit of {step.cpu} s"
    elif _out_of_memory(err, code):
        status, reason = "memory", f"address space limit of {step.memory_mb} MB"
    else:
        status, reason = "runtime_error", f"exit status {code}"
    return RunResult(status, stdout=text, stderr=err, exit_code=code, reason=reason)


def _out_of_memory(stderr: str, code: int) -> bool:
    markers = (
        "MemoryError",
        "std::bad_alloc",
        "OutOfMemoryError",
        "Cannot allocate memory",
        "Could not reserve enough space",
    )
    return any(m in stderr for m in markers)


def _read(path: Path, chars: int) -> str:
    with open(path, "rb") as handle:
        data = handle.read(chars * 4)
    return data.decode("utf-8", errors="replace")[:chars]


# -- the launcher side (this file run as a script) -------------------------------------------------

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
SYS_MOUNT_SETATTR, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, 0x8000, 0x1  # x86-64 and arm64 share the number


def _launch(spec: dict) -> None:  # pragma: no cover - runs in the launcher process (tested through run_program)
    import ctypes
    import resource

    libc = ctypes.CDLL(None, use_errno=True)

    def check(ret: int, what: str) -> None:
        if ret != 0:
            err = ctypes.get_errno()
            sys.stderr.write(f"sandbox: {what} refused ({os.strerror(err)})\n")
            sys.stderr.flush()
            os._exit(SKIPPED_EXIT)

    root = host_root()
    uid, gid = os.getuid(), os.getgid()
    stdin_fd = os.open(spec["stdin"], os.O_RDONLY)
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    check(libc.unshare(flags | (0 if root else CLONE_NEWUSER)), "unshare (namespaces)")
    if not root:  # anyone else becomes `nobody` of a new user namespace: no capabilities once the program runs
        for name, text in (("setgroups", "deny"), ("uid_map", f"{NOBODY} {uid} 1"), ("gid_map", f"{NOBODY} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount (private)")
    work_fd = os.open(spec["work"], os.O_RDONLY | os.O_DIRECTORY)  # opened in the new namespace, before /tmp is covered
    # Every existing mount read-only (the new ones below are writable): what a uid cannot protect, this does.
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)
    check(
        libc.syscall(SYS_MOUNT_SETATTR, -100, b"/", AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)),
        "mount_setattr (read-only root)",
    )

    def writable_bind(source: bytes, target: bytes) -> None:  # a bind of a read-only mount starts read-only
        check(libc.mount(source, target, None, MS_BIND, None), f"bind {target.decode()}")
        clear = (ctypes.c_uint64 * 4)(0, MOUNT_ATTR_RDONLY, 0, 0)
        check(
            libc.syscall(SYS_MOUNT_SETATTR, -100, target, 0, ctypes.byref(clear), ctypes.sizeof(clear)),
            f"mount_setattr ({target.decode()} writable)",
        )

    writable_bind(b"/dev/null", b"/dev/null")
    for folder in (*TMPFS_DIRS, spec["home"]):  # HOME hidden too: it is readable by a user that cannot drop its uid
        if folder and folder != "/" and os.path.isdir(folder):
            check(
                libc.mount(b"tmpfs", folder.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=16m,mode=1777"),
                f"mount tmpfs on {folder}",
            )
    os.mkdir(WORK_MOUNT)
    writable_bind(f"/proc/self/fd/{work_fd}".encode(), WORK_MOUNT.encode())
    os.close(work_fd)
    pid = os.fork()  # the child is PID 1 of the new namespace
    if pid:
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the launcher killed, PID 1 dies, the namespace empties
    program = os.fork()
    if program:
        while True:  # PID 1 reaps every orphan and leaves when the program ends
            done, status = os.wait()
            if done == program:
                os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    os.setsid()
    os.dup2(stdin_fd, 0)
    os.close(stdin_fd)
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (spec["cpu"], spec["cpu"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (spec["memory_mb"] * mb, spec["memory_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (spec["file_mb"] * mb, spec["file_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (spec["processes"], spec["processes"]))
    try:
        if root:
            os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)  # inside a new user namespace too: the mapped uid, so execve drops every capability
    except OSError as exc:
        sys.stderr.write(f"sandbox: cannot drop to nobody ({exc.strerror})\n")
        sys.stderr.flush()
        os._exit(SKIPPED_EXIT)  # a program with capabilities could undo the mounts: refuse rather than run
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: a setuid binary cannot give the program privileges back
    os.chdir(WORK_MOUNT)
    env = {"PATH": PATH, "HOME": WORK_MOUNT, "TMPDIR": WORK_MOUNT, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
    try:
        os.execve(spec["argv"][0], spec["argv"], env)
    except OSError as exc:
        sys.stderr.write(f"cannot start {spec['argv'][0]}: {exc}\n")
        os._exit(127)


if __name__ == "__main__":
    _launch(json.loads(sys.argv[1]))
