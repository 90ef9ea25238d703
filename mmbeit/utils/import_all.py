"""Import every module of a package, so that its components register."""
import importlib
import pkgutil


def import_submodules(package_name: str) -> None:
    """Import every module below ``package_name`` (recursively)."""
    package = importlib.import_module(package_name)
    for info in pkgutil.walk_packages(package.__path__, package_name + '.'):
        importlib.import_module(info.name)
