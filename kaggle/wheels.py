"""The wheels a bundle installs from: mcqa with its task's extras, their dependencies, and (for the tasks
that answer with the LLM) llama-cpp-python built for any x86-64.

llama-cpp-python ships only as source and compiles with `-march=native` by default, which can crash
with an illegal instruction on another CPU (Kaggle's). The generic build (`-DGGML_NATIVE=OFF`: AVX2,
FMA, F16C, no AVX-512) is made once and kept in `llama_wheel_dir()`; the Makefile builds the same
file for the main environment, so CI compiles it once. `--no-cache-dir` keeps pip from handing back
an earlier native build of the same version from its wheel cache.

The dependency wheels are resolved with the versions of the running environment as constraints
(what the tests ran with is what the bundle ships) and kept in a wheelhouse under the cache, keyed
by those constraints and by what is asked for (`mcqa-agent[embed]` for Eedi and MAP resolves to
another, smaller set than `mcqa-agent[llm]`), so a second bundle copies files instead of resolving again.
A bundle can name projects that must not ship (an `embed` bundle: torch, sentence-transformers, ...):
one that a dependency pulls in anyway stops the build, rather than silently doubling the upload.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from mcqa.config import REPO_ROOT, cache_dir

LLAMA = "llama-cpp-python"
GENERIC_CMAKE_ARGS = "-DGGML_NATIVE=OFF"
COMPLETE = ".complete"


class WheelError(RuntimeError):
    """A wheel that could not be built or resolved."""


def wheels_root() -> Path:
    """`MCQA_WHEELS_DIR`, else `cache_dir()/wheels` (the Makefile uses the same default)."""
    return Path(os.environ.get("MCQA_WHEELS_DIR") or cache_dir() / "wheels").expanduser()


def llama_wheel_dir() -> Path:
    return wheels_root() / "llama-generic"


def llama_version() -> str:
    try:
        return importlib.metadata.version(LLAMA)
    except importlib.metadata.PackageNotFoundError:
        raise WheelError(f"{LLAMA} is not installed here: install mcqa first (make install)") from None


def _pip(*args: str, env: dict | None = None, log=print) -> None:
    command = [sys.executable, "-m", "pip", *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise WheelError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def ensure_llama_wheel(version: str | None = None, log=print) -> Path:
    """The generic llama-cpp-python wheel, built once (about 6-14 minutes on 2 cores)."""
    version = version or llama_version()
    folder = llama_wheel_dir()
    found = sorted(folder.glob(f"llama_cpp_python-{version}-*.whl"))
    if found:
        return found[0]
    log(f"building {LLAMA}=={version} for generic x86-64 ({GENERIC_CMAKE_ARGS}); this takes minutes")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        env = {**os.environ, "CMAKE_ARGS": GENERIC_CMAKE_ARGS}
        _pip("wheel", "--no-deps", "--no-cache-dir", "--no-binary", LLAMA, "-w", tmp, f"{LLAMA}=={version}", env=env)
        (built,) = Path(tmp).glob("llama_cpp_python-*.whl")
        built.replace(folder / built.name)
    return folder / built.name


def build_mcqa_wheel(dest: Path) -> Path:
    """mcqa's own wheel, from the source tree this mcqa runs from."""
    if not (REPO_ROOT / "pyproject.toml").is_file():
        raise WheelError(f"no source tree at {REPO_ROOT}: a bundle is built from a checkout of mcqa")
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("mcqa_agent-*.whl"):
        old.unlink()
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dest), str(REPO_ROOT))
    (wheel,) = dest.glob("mcqa_agent-*.whl")
    return wheel


def wheel_requires(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA: the mcqa wheel just built from the source tree, which
    is what the bundle installs (the running environment's metadata can predate an edit of pyproject.toml)."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(name).decode()
    return sorted(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:"))


def constraints() -> str:
    """`pip freeze` of this environment, less mcqa itself and editable installs."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    )
    lines = [
        line
        for line in result.stdout.splitlines()
        if line
        and not line.startswith(("#", "-e"))
        and " @ " not in line
        and not line.lower().startswith(("mcqa-agent", "mcqa_agent"))
    ]
    return "\n".join(sorted(lines)) + "\n"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def project_of(wheel: Path) -> str:
    """A wheel file's project name, normalised as wheel file names write it (scikit_learn, torch)."""
    return Path(wheel).name.split("-")[0].lower().replace(".", "_")


def build_wheelhouse(
    dest: Path,
    requirements: list[str],
    find_links: list[str] = (),
    log=print,
    llama: bool = True,
    forbid: tuple[str, ...] = (),
) -> list[Path]:
    """Every wheel needed to `pip install --no-index` mcqa and `requirements` into `dest`
    (`requirements` names mcqa with its extras, e.g. `mcqa-agent[embed]`). `llama`: the requirements
    bring llama-cpp-python (the `llm` extra), and the generic build is the one that must ship. `forbid`:
    projects (as `project_of` names them) that must not ship: WheelError if the resolution brings one."""
    dest.mkdir(parents=True, exist_ok=True)
    mcqa_wheel = build_mcqa_wheel(dest)
    llama_wheel = ensure_llama_wheel(log=log) if llama else None
    pinned = constraints()
    key = hashlib.sha256(
        "\n".join(
            [
                pinned,
                *wheel_requires(mcqa_wheel),
                *sorted(requirements),
                *find_links,
                sha256(llama_wheel) if llama_wheel else "no llama",
            ]
        ).encode()
    ).hexdigest()[:16]
    house = wheels_root() / f"house-{key}"
    if not (house / COMPLETE).is_file():
        log(f"resolving the dependency wheels into {house} (once per set of versions)")
        partial = house.with_name(f"{house.name}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        constraints_file = partial / "constraints.txt"
        constraints_file.write_text(pinned)
        sources = [str(llama_wheel.parent)] if llama_wheel else []
        links = [arg for link in [*sources, *find_links] for arg in ("--find-links", link)]
        _pip("wheel", "-q", "-w", str(partial), *links, "-c", str(constraints_file), str(mcqa_wheel), *requirements)
        for own in partial.glob("mcqa_agent-*.whl"):
            own.unlink()
        bundled = sorted(partial.glob("llama_cpp_python-*.whl"))
        if llama_wheel and (len(bundled) != 1 or sha256(bundled[0]) != sha256(llama_wheel)):
            raise WheelError(
                f"pip picked {', '.join(b.name for b in bundled) or 'no llama-cpp-python'}, not the generic "
                f"build {llama_wheel}: refusing a -march=native wheel in a bundle"
            )
        if not llama_wheel and bundled:  # pip built one from source: -march=native, and not asked for
            raise WheelError(
                f"{' '.join(requirements)} pulled in {bundled[0].name} though the task runs no LLM: refusing "
                f"a -march=native wheel in a bundle"
            )
        (partial / COMPLETE).write_text(key + "\n")
        shutil.rmtree(house, ignore_errors=True)
        partial.rename(house)
    unwanted = sorted(w.name for w in house.glob("*.whl") if project_of(w) in forbid)
    if unwanted:
        raise WheelError(f"{' '.join(requirements)} pulled in {', '.join(unwanted)}, which this bundle must not ship")
    for wheel in house.glob("*.whl"):
        if not (dest / wheel.name).exists():
            _link_or_copy(wheel, dest / wheel.name)
    return sorted(dest.glob("*.whl"))
