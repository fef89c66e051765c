"""Every Python block of README.md and docs/ runs, page by page; every `keras-dtd` command shown
in a bash block parses with the CLI; every image a page shows is committed and made by
docs/figures.py."""

import pathlib
import re
import shlex
import warnings

import pytest

import keras_dtd
from keras_dtd.analyzers import assignment
from keras_dtd.core import registry
from keras_dtd.integrations import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FIGURES = (ROOT / "docs" / "figures.py").read_text()


def _blocks(page, language):
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), re.S | re.M)


@pytest.fixture
def registries():
    """A page may register layers and rules: each page starts from the registries as they were."""
    layers, rules = dict(registry._REGISTRY), list(assignment._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(layers)
    assignment._REGISTRY[:] = rules


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_python_blocks_of_each_page_run(page, registries, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files a block writes stay out of the repository
    scope = {"__name__": "__docs__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.ZeroRelevanceWarning)
        for code in _blocks(page, "python"):
            exec(compile(code, str(page), "exec"), scope)


def _commands():
    for page in PAGES:
        for code in _blocks(page, "bash"):
            for line in code.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                if line.startswith("keras-dtd "):
                    yield pytest.param(line, id=f"{page.relative_to(ROOT)}: {line[:40]}")


@pytest.mark.parametrize("command", list(_commands()))
def test_the_cli_commands_shown_parse(command):
    cli._parser().parse_args(shlex.split(command)[1:])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_image_shown_is_committed_and_generated(page):
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page.read_text()):
        path = (page.parent / target).resolve()
        assert path.exists(), f"{page.name} shows {target}, which is not committed"
        assert path.name in FIGURES, f"{path.name} is not made by docs/figures.py"
