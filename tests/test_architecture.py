"""The package's layers: each imports only those below it, and no module reaches into an
analyzer's private members (they use the documented interface)."""

import ast
import importlib
import pathlib

import keras
import pytest

import keras_dtd
from keras_dtd import baselines, composites, rules

PACKAGE = pathlib.Path(keras_dtd.__file__).parent
LAYERS = ["core", "rules", "analyzers", "evaluation", "integrations"]


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) > 1:
            yield parts[0], path


def _module_level_imports(tree):
    """keras_dtd modules imported at module level (function-level imports are lazy)."""
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_dtd"):
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            yield from ((alias.name, []) for alias in node.names if alias.name.startswith("keras_dtd"))


def _layer_of(module, names):
    parts = module.split(".")
    if len(parts) > 1:
        return parts[1]
    return names[0] if len(names) == 1 and names[0] in LAYERS else "keras_dtd"  # from keras_dtd import rules


def test_each_layer_imports_only_layers_below_it():
    wrong = []
    for layer, path in _modules():
        for module, names in _module_level_imports(ast.parse(path.read_text())):
            target = _layer_of(module, names)
            if target == "keras_dtd" or LAYERS.index(target) > LAYERS.index(layer):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module} {names}")
    assert not wrong, wrong
    assert len(list(_modules())) > 30


def _private_members_of_analyzer():
    source = (PACKAGE / "analyzers" / "analyzer.py").read_text()
    (cls,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Analyzer"]
    members = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    members |= {
        t.attr
        for n in ast.walk(cls)
        if isinstance(n, ast.Assign)
        for target in n.targets
        for t in (target.elts if isinstance(target, ast.Tuple) else [target])
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
    }
    return {m for m in members if m.startswith("_") and not m.startswith("__")}


def test_no_module_touches_an_analyzers_private_members():
    private = _private_members_of_analyzer()
    assert {"_plan", "_forward", "_output_index"} <= private
    touched = []
    for _, path in _modules():
        if path.name == "analyzer.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in private:
                touched.append(f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.attr}")
    assert not touched, touched


def test_public_import_paths_are_the_modules_of_the_layers():
    paths = {
        "composites": "analyzers.composites",
        "baselines": "analyzers.baselines",
        "taylor": "analyzers.taylor",
        "relevance_models": "analyzers.relevance_models",
        "compat": "analyzers.innvestigate",
        "metrics": "evaluation.metrics",
        "beam": "integrations.beam",
        "callbacks": "integrations.callbacks",
        "plot": "integrations.plot",
        "datasets": "integrations.datasets",
        "demo": "integrations.demo",
        "cli": "integrations.cli",
    }
    for public, home in paths.items():
        module = importlib.import_module(f"keras_dtd.{public}")
        assert module is importlib.import_module(f"keras_dtd.{home}"), public
        assert getattr(keras_dtd, public) is module, public
    from keras_dtd.callbacks import RelevanceMonitor
    from keras_dtd.taylor import Taylor

    assert RelevanceMonitor.__module__ == "keras_dtd.integrations.callbacks" and Taylor is keras_dtd.Taylor
    assert callable(keras_dtd.export)  # the function; its module is keras_dtd.integrations.export


def test_renamed_public_names_keep_deprecated_aliases(tmp_path):
    def same(a, b):
        return (a.name, repr(a.rules), repr(a.first)) == (b.name, repr(b.rules), repr(b.first))

    with pytest.warns(DeprecationWarning, match="DeepTaylor"):
        assert same(composites.dtd((0, 1)), composites.DeepTaylor((0, 1)))
    with pytest.warns(DeprecationWarning, match="Uniform"):
        assert same(composites.lrp(rules.Z()), composites.Uniform(rules.Z()))
    with pytest.warns(DeprecationWarning, match="InputValues"):
        assert baselines.Input is baselines.InputValues
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.warns(DeprecationWarning, match=r"keras_dtd\.export"):
        path = keras_dtd.DTD(model).export(tmp_path / "serving")
    assert (pathlib.Path(path) / "saved_model.pb").is_file()
