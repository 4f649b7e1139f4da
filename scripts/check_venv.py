"""Is this virtualenv already a working install of this checkout? (used by scripts/setup.sh)

Run with the venv's own python. Exit 0 when every requirement of pyproject.toml (dependencies and
the ``test`` extra) is installed at a satisfying version, torch is exactly 2.13.0, and ``qa`` is
installed from this checkout (editable); otherwise print what is missing and exit 1.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # a venv has pip, and pip vendors packaging
    from pip._vendor.packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def problems() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project.get("dependencies", [])) + list(project.get("optional-dependencies", {}).get("test", []))
    found = []
    for spec in wanted:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            found.append(f"{req.name} is not installed")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            found.append(f"{req.name} {version} does not satisfy {req.specifier}")
    try:
        torch = metadata.version("torch")
        if torch.split("+")[0] != "2.13.0":
            found.append(f"torch is {torch}, not 2.13.0")
    except metadata.PackageNotFoundError:
        pass  # already reported above
    try:
        dist = metadata.distribution(project["name"])
        if dist.version != project["version"]:
            found.append(f"{project['name']} {dist.version} is installed, pyproject.toml says {project['version']}")
        import qa

        if ROOT not in Path(qa.__file__).resolve().parents:
            found.append(f"qa is imported from {qa.__file__}, not from this checkout (not an editable install)")
    except metadata.PackageNotFoundError:
        found.append(f"{project['name']} itself is not installed")
    except ImportError as exc:
        found.append(f"qa cannot be imported: {exc}")
    return found


if __name__ == "__main__":
    issues = problems()
    for line in issues:
        print(f"  - {line}")
    sys.exit(1 if issues else 0)
