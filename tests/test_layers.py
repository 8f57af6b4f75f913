"""The package's layers: a module imports, at its top, only its own layer and those below.

    cli -> mixture, amortized -> io -> engine -> data, kernels

Persistence runs one way: the estimators import ``fastvi.io`` (to save themselves, to
check a resumed state) and register their classes with ``fastvi.io.registry``;
``fastvi.io`` imports no estimator, at its top, inside a function, or by a module's name
(``importlib``).  Elsewhere an import inside a function may reach where the top may not
only as ``LAZY`` lists (the CLI imports its commands' layers lazily for a quick start-up,
and may import any layer anyway).
"""
import ast
import json
import pathlib
import subprocess
import sys

import pytest

import fastvi
import fastvi.kernels

ROOT = pathlib.Path(fastvi.__file__).parent
KERNELS = pathlib.Path(fastvi.kernels.__file__).parent      # kernels/, installed as fastvi.kernels
# what each layer's modules may import at their top (their own layer included)
ALLOWED = {
    "kernels": {"kernels"},
    "data": {"data"},
    "engine": {"engine", "data", "kernels"},
    "io": {"io", "engine", "data", "kernels"},
    "mixture": {"mixture", "io", "engine", "data"},
    "amortized": {"amortized", "io", "data", "kernels"},
    "cli": {"cli", "io", "mixture", "amortized", "engine", "data", "kernels"},
}
# (module, layer) -> why it imports that layer inside a function, where its top may not
LAZY = {
    ("amortized/encoder.py", "mixture"): "a MixtureEncoder fits its mixture",
    ("mixture/sizes.py", "kernels"): "the kernels' block sizes, for the memory a fit takes",
}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if len(parts) > 1:
            yield parts[0], path, ["fastvi"] + list(parts[:-1])
    for path in sorted(KERNELS.glob("*.py")):
        yield "kernels", path, ["fastvi", "kernels"]


def _top_level_fastvi_imports(path, package, nodes=None):
    """The fastvi layers that ``path`` (a module of ``package``) imports outside any
    function or class (or among ``nodes``, a list of its syntax tree's nodes)."""
    tree = ast.parse(path.read_text())
    for node in (tree.body if nodes is None else nodes):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = node.module.split(".")
            names = [target] if node.module else [target + [a.name] for a in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name.split(".") for alias in node.names]
        else:
            continue
        for name in names:
            if name[0] == "fastvi" and len(name) > 1:
                yield name[1], node.lineno


@pytest.mark.parametrize("layer,path,package", list(_modules()),
                         ids=[f"{layer}/{path.name}" for layer, path, _ in _modules()])
def test_a_module_imports_only_its_layer_and_those_below(layer, path, package):
    wrong = [(name, line) for name, line in _top_level_fastvi_imports(path, package)
             if name not in ALLOWED[layer] and name != "__version__"]
    assert not wrong, f"{layer}/{path.name} imports {wrong} at its top"


def _all_fastvi_imports(path, package):
    """The fastvi layers that ``path`` imports anywhere: at its top or inside a function."""
    return _top_level_fastvi_imports(path, package, list(ast.walk(ast.parse(path.read_text()))))


@pytest.mark.parametrize("layer,path,package", list(_modules()),
                         ids=[f"{layer}/{path.name}" for layer, path, _ in _modules()])
def test_an_import_inside_a_function_reaches_up_only_where_listed(layer, path, package):
    where = f"{layer}/{path.name}"
    wrong = [(name, line) for name, line in _all_fastvi_imports(path, package)
             if name not in ALLOWED[layer] and name != "__version__"
             and (where, name) not in LAZY]
    assert not wrong, f"{where} imports {wrong} inside a function"


def test_io_names_no_estimator_module():
    """``fastvi.io`` imports no estimator by a module's name either (``importlib``,
    ``__import__``): its registry gets the estimators' classes from their packages."""
    for path in sorted((ROOT / "io").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not node.value.startswith(("fastvi.mixture", "fastvi.amortized")), (
                    f"io/{path.name}:{node.lineno} names {node.value!r}")


def _fresh(code):
    """What ``code`` prints as its last line, as JSON, run in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT.parent)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_io_loads_no_estimator():
    loaded = _fresh("""
import json, sys
import fastvi.io.model, fastvi.io.amortized, fastvi.io.checkpoint, fastvi.io.tree
import fastvi.io.resume_checks, fastvi.io.registry, fastvi.io.names
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("fastvi.mixture",
                                                                 "fastvi.amortized")))))
""")
    assert loaded == []


def test_reading_a_file_first_imports_the_packages_that_register():
    """In a fresh interpreter, ``fastvi.io``'s readers find the estimators' classes: the
    registry's provider (given by ``fastvi``) imports their packages before a lookup."""
    legacy = ROOT.parent / "tests" / "data" / "legacy"
    if not legacy.exists():
        pytest.skip("not run from a source checkout")
    names = _fresh(f"""
import json
from fastvi.io.model import load
from fastvi.io.checkpoint import load_checkpoint
legacy = {str(legacy)!r}
names = [type(load(f"{{legacy}}/models/{{name}}")).__name__
         for name in ("gmm_full.h5", "bgmm_dp_full.h5", "vae_amortized.h5", "ppca_amortized.h5")]
state, meta = load_checkpoint(f"{{legacy}}/checkpoints/ck-vae-amortized.ckpt")
print(json.dumps(names + [type(state).__name__]))
""")
    assert names == ["GaussianMixture", "BayesianGaussianMixture", "VAE", "PPCA", "EpochState"]


def test_the_registry_is_a_fixed_list_of_fastvis_own_classes():
    """A checkpoint may hold instances of fastvi's own classes only: every registered name
    is a class defined in fastvi (under its module's name or a former one)."""
    from fastvi.io import registry, tree
    names = tree.classes()
    assert names
    for name, cls in names.items():
        assert cls.__module__.startswith("fastvi."), name
        assert name.startswith("fastvi.") and name.endswith("." + cls.__qualname__), name
    for format in ("fastvi-model", "fastvi-amortized"):
        for name, entry in registry.model_entries(format).items():
            assert entry.cls.__name__ == name and entry.cls.__module__.startswith("fastvi.")


def test_every_layer_is_a_package_with_a_docstring():
    for layer in ALLOWED:
        if layer == "kernels":
            continue
        init = ROOT / layer / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), layer


def test_every_public_name_resolves_and_star_import_works():
    namespace = {}
    exec("from fastvi import *", namespace)
    for name in fastvi.__all__:
        assert namespace[name] is getattr(fastvi, name)
    assert set(fastvi.__all__) <= set(dir(fastvi))
    # the former homes of the estimators keep working where they were packages' names
    from fastvi.mixture import BayesianGaussianMixture, GaussianMixture
    from fastvi.amortized import VAE
    from fastvi.datasets import make_mixture, write_mixture_h5
    assert GaussianMixture is fastvi.GaussianMixture and VAE is fastvi.VAE
    assert BayesianGaussianMixture is fastvi.BayesianGaussianMixture
    assert callable(make_mixture) and callable(write_mixture_h5)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        fastvi.nothing


def test_pyproject_lists_every_package():
    """setuptools installs only the packages pyproject.toml lists: a new sub-package (the
    CUDA kernels, a backend) left off the list works in an editable checkout and is missing
    from every wheel."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = ROOT.parent / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("not run from a source checkout")
    listed = set(tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(("fastvi",) + init.parent.relative_to(ROOT).parts).rstrip(".")
             for init in ROOT.rglob("__init__.py")}
    found |= {"fastvi.kernels." + init.parent.relative_to(KERNELS).as_posix().replace("/", ".")
              for init in KERNELS.rglob("__init__.py") if init.parent != KERNELS}
    found.add("fastvi.kernels")
    assert listed == found


def test_the_io_submodules_are_attributes_of_the_package():
    """``import fastvi.io`` then ``fastvi.io.model.save``: the submodules load on first use
    (the package imports them lazily), as when it imported them at its top."""
    names = _fresh("""
import json
import fastvi.io
print(json.dumps([fastvi.io.model.save.__name__, fastvi.io.checkpoint.Checkpointer.__name__,
                  fastvi.io.amortized.__name__, sorted(set(dir(fastvi.io)) & {"model", "tree"})]))
""")
    assert names == ["save", "Checkpointer", "fastvi.io.amortized", ["model", "tree"]]
