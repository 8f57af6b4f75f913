"""The package's layers: a module imports, at its top, only its own layer and those below.

    cli -> io -> mixture, amortized -> engine -> data, kernels

Imports inside functions may reach up (``save`` reaches ``fastvi.io``; the CLI imports its
commands' layers lazily for a quick start-up); imports at the top of a module may not, so
loading a layer never loads one above it.
"""
import ast
import pathlib

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
    "mixture": {"mixture", "engine", "data"},
    "amortized": {"amortized", "data", "kernels"},
    "io": {"io", "mixture", "amortized", "engine", "data"},
    "cli": {"cli", "io", "mixture", "amortized", "engine", "data", "kernels"},
}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if len(parts) > 1:
            yield parts[0], path, ["fastvi"] + list(parts[:-1])
    for path in sorted(KERNELS.glob("*.py")):
        yield "kernels", path, ["fastvi", "kernels"]


def _top_level_fastvi_imports(path, package):
    """The fastvi layers that ``path`` (a module of ``package``) imports outside any
    function or class."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
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
