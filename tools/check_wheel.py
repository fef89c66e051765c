"""Release check: build keras_dtd's sdist and wheel, install the wheel in a clean environment, smoke-test it.

    .venv/bin/python tools/check_wheel.py [--keep] [--no-isolation]

1. Copies the source tree (without .git, .venv, build outputs and caches) to a temporary directory and
   builds it there with ``python -m build``: the sdist first, then the wheel from the unpacked sdist,
   so a file the sdist lacks (the README that setup.cfg reads, say) fails the wheel build. Nothing is
   written to the repository.
2. Checks that both contain ``keras_dtd/py.typed`` and that the wheel's METADATA version is the
   ``__version__`` of ``keras_dtd/__init__.py``.
3. Creates a virtual environment (``python -m venv``, no system site packages) and installs the wheel
   with its ``[cpu]`` extra (tensorflow-cpu: a few minutes when pip has to download it). pip reads the
   environment (``PIP_*``) and its configuration files as usual.
4. In that environment, outside the source tree: ``import keras_dtd`` (from the environment, with
   ``py.typed`` beside it), ``keras-dtd --help``, and one ``keras_dtd.DTD(model).analyze(x)`` on a
   small Sequential model: the map has the shape of x and sums to max(f, 0) (rtol 1e-5).

Exits with status 1 and a message naming the failed step; prints each step's time.

The build is isolated by default (``build`` installs setuptools and wheel from pyproject.toml's
``[build-system]`` into a fresh environment, through pip and its index). ``--no-isolation`` builds
with the setuptools and wheel of the interpreter running this script instead, for machines where pip
cannot reach an index or wheel cache that has them (offline).
"""

from __future__ import annotations

import argparse
import ast
import email.parser
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "keras_dtd"
MARKER = f"{PACKAGE}/py.typed"
EXTRA = "cpu"
# Not copied for the build: at the top of the tree, and anywhere below it.
TOP_LEVEL_SKIPPED = {".git", ".venv", "build", "dist", "out", "site"}
SKIPPED = {"__pycache__", ".pytest_cache", ".ruff_cache"}

SMOKE_TEST = """
import warnings

import keras
import numpy as np

import keras_dtd

warnings.simplefilter("error", keras_dtd.ZeroRelevanceWarning)  # every sample has f > 0 here
keras.utils.set_random_seed(0)
positive = keras.initializers.RandomUniform(0.0, 1.0, seed=0)  # f > 0 for inputs >= 0
model = keras.Sequential([
    keras.Input((3, 4)),
    keras.layers.Flatten(),
    keras.layers.Dense(8, activation="relu", kernel_initializer=positive),
    keras.layers.Dense(3, kernel_initializer=positive),
])
x = np.random.default_rng(0).random((5, 3, 4)).astype("float32")
R = keras_dtd.DTD(model).analyze(x)
f = model(x).numpy().max(axis=-1)
assert R.shape == x.shape, f"the map has shape {R.shape}, x has {x.shape}"
assert np.all(f > 0), f"the smoke test needs f > 0, got {f}"
sums = R.reshape(len(x), -1).sum(axis=-1)
assert np.allclose(sums, np.maximum(f, 0), rtol=1e-5, atol=0), f"maps sum to {sums}, max(f, 0) = {f}"
print(f"DTD map {R.shape}, sums {', '.join(f'{s:.6g}' for s in sums)} = max(f, 0) (rtol 1e-5)")
"""


class CheckFailed(Exception):
    pass


def source_version() -> str:
    """``__version__`` as keras_dtd/__init__.py assigns it (read, not imported)."""
    tree = ast.parse((ROOT / PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise CheckFailed(f"{PACKAGE}/__init__.py assigns no __version__")


def run(command, step, **kwargs) -> subprocess.CompletedProcess:
    """Run ``command``; on failure raise CheckFailed with the end of its output."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        tail = "\n".join("    " + line for line in output[-40:])
        shown = " ".join("<code>" if "\n" in c or "; " in c else c for c in map(str, command))
        raise CheckFailed(f"{step}: `{shown}` exited with {result.returncode}:\n{tail}")
    return result


def copy_source(target: pathlib.Path) -> None:
    def ignore(directory, names):
        skipped = set(SKIPPED) | (TOP_LEVEL_SKIPPED if pathlib.Path(directory) == ROOT else set())
        return {n for n in names if n in skipped or n.endswith((".egg-info", ".pyc"))}

    shutil.copytree(ROOT, target, ignore=ignore)


def build(source: pathlib.Path, outdir: pathlib.Path, isolation: bool) -> tuple[pathlib.Path, pathlib.Path]:
    command = [sys.executable, "-m", "build", "--outdir", outdir, source]
    if not isolation:
        command.insert(3, "--no-isolation")
    run(command, "build", cwd=source)
    wheels, sdists = sorted(outdir.glob("*.whl")), sorted(outdir.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        raise CheckFailed(f"build: expected one wheel and one sdist in {outdir}, found {os.listdir(outdir)}")
    return wheels[0], sdists[0]


def check_contents(wheel: pathlib.Path, sdist: pathlib.Path, version: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        if MARKER not in names:
            raise CheckFailed(f"contents: {wheel.name} has no {MARKER}")
        metadata = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if len(metadata) != 1:
            raise CheckFailed(f"contents: {wheel.name} has {len(metadata)} .dist-info/METADATA files")
        fields = email.parser.Parser().parsestr(archive.read(metadata[0]).decode())
    if fields["Version"] != version:
        raise CheckFailed(
            f"contents: the wheel's METADATA says version {fields['Version']!r}; "
            f"{PACKAGE}.__version__ is {version!r}"
        )
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    # an sdist holds one top directory, <name>-<version>/
    if not any(n.split("/", 1)[-1] == MARKER for n in names):
        raise CheckFailed(f"contents: {sdist.name} has no {MARKER}")
    print(f"  {wheel.name}: {MARKER}, METADATA version {fields['Version']}")
    print(f"  {sdist.name}: {MARKER} ({len(names)} entries)")


def clean_environment() -> dict:
    """This process's environment (PIP_* included) without what would let the new environment see
    other packages or this source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def install(wheel: pathlib.Path, venv: pathlib.Path, env: dict) -> pathlib.Path:
    # sys.executable may itself be a virtual environment's: venv then bases the new one on the
    # interpreter it was made from, and without --system-site-packages it sees none of its packages.
    run([sys.executable, "-m", "venv", venv], "venv", env=env)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", f"{wheel}[{EXTRA}]"], "install", env=env)
    return python


def smoke_test(python: pathlib.Path, venv: pathlib.Path, workdir: pathlib.Path, version: str, env) -> None:
    code = (
        "import keras_dtd, pathlib; p = pathlib.Path(keras_dtd.__file__).resolve().parent; "
        "print(keras_dtd.__version__); print(p); print((p / 'py.typed').is_file())"
    )
    output = run([python, "-c", code], "import", cwd=workdir, env=env).stdout
    found_version, location, marker = output.strip().splitlines()[-3:]
    if found_version != version or not pathlib.Path(location).is_relative_to(venv.resolve()):
        raise CheckFailed(
            f"import: keras_dtd {found_version} from {location}; expected {version} from {venv}"
        )
    if marker != "True":
        raise CheckFailed(f"import: no py.typed beside the installed keras_dtd in {location}")
    print(f"  import keras_dtd: {found_version} from {location}")
    help_text = run([venv / "bin" / "keras-dtd", "--help"], "keras-dtd --help", cwd=workdir, env=env).stdout
    if "usage: keras-dtd" not in help_text:
        raise CheckFailed(f"keras-dtd --help: no usage line in its output:\n{help_text}")
    print("  keras-dtd --help: ok")
    result = run([python, "-c", SMOKE_TEST], "analyze", cwd=workdir, env=env)
    print("  " + result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and print it")
    parser.add_argument(
        "--no-isolation",
        dest="isolation",
        action="store_false",
        help="build with this interpreter's setuptools and wheel (pip cannot reach an index)",
    )
    args = parser.parse_args(argv)
    timings = []
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="keras_dtd-check-"))
    started = time.perf_counter()

    def step(name, function, *arguments):
        print(f"[{name}]", flush=True)
        t = time.perf_counter()
        try:
            return function(*arguments)
        finally:
            timings.append((name, time.perf_counter() - t))

    failure = None
    try:
        version = source_version()
        print(f"keras_dtd {version} from {ROOT}; working in {workdir}")
        env = clean_environment()
        source, dist, venv = workdir / "src", workdir / "dist", workdir / "venv"
        step("copy source", copy_source, source)
        wheel, sdist = step("build sdist + wheel", build, source, dist, args.isolation)
        step("check contents", check_contents, wheel, sdist, version)
        python = step(f"venv + pip install wheel[{EXTRA}]", install, wheel, venv, env)
        step("smoke test", smoke_test, python, venv, workdir, version, env)
    except CheckFailed as error:
        failure = error
    finally:
        print("\ntimings:")
        for name, seconds in timings:
            print(f"  {name:<28} {seconds:7.1f} s")
        print(f"  {'total':<28} {time.perf_counter() - started:7.1f} s")
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        sys.stdout.flush()
    if failure is not None:
        print(f"check_wheel: FAILED at {failure}", file=sys.stderr)
        return 1
    print(f"check_wheel: OK: keras_dtd {version} wheel and sdist")
    return 0


if __name__ == "__main__":
    sys.exit(main())
