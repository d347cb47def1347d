"""The wheelhouse: this pastset and everything it needs, as wheel files in one directory.

``pypsdeploy`` installs pastset on nodes that may have no internet access, so it
ships wheels and the nodes install with ``pip install --no-index --find-links``.
The wheels are made here, from what this process is running, so the nodes get
the very versions that talk to each other here (the wire format depends on
Pyro5, msgpack and pastset alike):

* **pastset itself**: when it is imported from an installed distribution (the
  usual case: ``pip install`` of a wheel or of a source tree), its installed
  files are packed back into a wheel; when it is imported from a checkout (the
  ``bin/`` wrappers, ``PYTHONPATH``) or an editable install, the source tree is
  built with ``pip wheel`` in a scratch copy, so the checkout is left untouched.
  Building needs setuptools and wheel here (then nothing is downloaded) or
  pip's access to an index for an isolated build.
* **its dependencies**, all the way down, are packed back from the installed
  distributions the same way.  A dependency installed without a RECORD (some
  system packages) is fetched as a wheel by ``pip wheel NAME==VERSION`` instead.
* **pip**, whose wheel the nodes run directly (``python pip.whl/pip install``),
  so the node needs neither pip nor ``ensurepip`` of its own.

Packing back takes the files a distribution's RECORD lists: those in
site-packages as they are, scripts other than the console scripts pip
generates (with their ``#!python`` line restored) and data files under the
environment's prefix; compiled ``__pycache__`` files are left out.  Entries get
a fixed time stamp, and :attr:`Wheelhouse.digest` is computed from the contents
of the wheels, so the same installation gives the same digest every time.

Compiled dependencies make a wheelhouse specific to this Python version and
machine architecture; both are recorded, and a node must match them.
"""

from __future__ import annotations

import base64
import email.parser
import hashlib
import importlib.metadata as metadata
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from pastset.errors import WheelhouseError

__all__ = ["MANIFEST", "Wheelhouse", "WheelhouseError", "build_wheelhouse", "open_wheelhouse", "source_tree"]

log = logging.getLogger(__name__)

MANIFEST = "wheelhouse.json"
BUILD_TIMEOUT = 600.0
_EPOCH = (1980, 1, 1, 0, 0, 0)
_LEFT_OUT = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
_REQUIREMENT = re.compile(
    r"\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?[^;]*(?:;(?P<marker>.*))?$"
)


@dataclass(frozen=True)
class Wheelhouse:
    """A directory of wheels that installs one pastset version without an index."""

    path: Path
    version: str  # pastset's
    pastset: str  # file name of pastset's wheel
    pip: str  # file name of pip's wheel
    wheels: tuple[str, ...]  # every wheel file name, pastset and pip included
    python: str  # "3.11": the Python the wheels are for
    machine: str  # "x86_64": the architecture of compiled wheels
    digest: str  # of the wheels' contents: equal digests install the same files

    @property
    def size(self) -> int:
        """Bytes of all wheels together."""
        return sum((self.path / name).stat().st_size for name in self.wheels)

    def save(self) -> None:
        """Write the manifest, so that :func:`open_wheelhouse` can reuse the directory."""
        data = asdict(self)
        data["path"] = ""
        data["wheels"] = list(self.wheels)
        (self.path / MANIFEST).write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Wheelhouse | None:
        """The wheelhouse saved in ``path``, or None if there is none or a wheel is missing."""
        try:
            data = json.loads((path / MANIFEST).read_text())
            house = cls(**{**data, "path": path, "wheels": tuple(data["wheels"])})
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if not all((path / name).is_file() for name in house.wheels):
            return None
        return house


def _here() -> tuple[str, str]:
    return f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine()


def open_wheelhouse(path: Path) -> Wheelhouse:
    """The wheelhouse kept in ``path`` if it is for this pastset, Python and machine; else build it there."""
    from pastset import __version__

    house = Wheelhouse.load(path)
    if house is not None and house.version == __version__ and (house.python, house.machine) == _here():
        log.info("reusing the wheelhouse in %s", path)
        return house
    if house is not None:
        for name in house.wheels:
            (path / name).unlink(missing_ok=True)
    return build_wheelhouse(path)


def build_wheelhouse(dest: Path, source: Path | None = None) -> Wheelhouse:
    """Make the wheels of the running pastset, its dependencies and pip in ``dest``.

    ``source`` forces a build from that source tree; by default the running
    pastset decides (see the module documentation).
    """
    from pastset import __version__

    dest.mkdir(parents=True, exist_ok=True)
    source = source or source_tree()
    if source is not None:
        own = _build_from_source(source, dest)
    else:
        own = _repack(metadata.distribution("pastset"), dest)
    with zipfile.ZipFile(dest / own) as wheel:
        info = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(wheel.read(info).decode())
    if meta["Version"] != __version__:
        raise WheelhouseError(
            f"the wheel built from {source} is pastset {meta['Version']}, but this is pastset {__version__}: "
            "run pypsdeploy with the pastset you mean to deploy"
        )
    wheels = [own]
    for dist in _closure(meta.get_all("Requires-Dist") or []):
        wheels.append(_wheel_of(dist, dest))
    pip = _wheel_of(_installed("pip", "pastset's deployment"), dest)
    python, machine = _here()
    house = Wheelhouse(dest, __version__, own, pip, (*wheels, pip), python, machine, _digest(dest, [*wheels, pip]))
    house.save()
    log.info("wheelhouse %s: %d wheels, %.1f MB", dest, len(house.wheels), house.size / 1e6)
    return house


def source_tree() -> Path | None:
    """The source tree the running pastset comes from, or None if it runs from an installed distribution."""
    import pastset

    package = Path(pastset.__file__).resolve().parent
    try:
        dist = metadata.distribution("pastset")
        installed = Path(str(dist.locate_file("pastset/__init__.py"))).resolve() == package / "__init__.py"
        installed = installed and dist.read_text("RECORD") is not None  # not a checkout's .egg-info
        editable = json.loads(dist.read_text("direct_url.json") or "{}").get("dir_info", {}).get("editable", False)
    except (metadata.PackageNotFoundError, ValueError):
        installed, editable = False, False
    if installed and not editable:
        return None
    root = package.parent
    if not any((root / f).is_file() for f in ("setup.cfg", "setup.py", "pyproject.toml")):
        raise WheelhouseError(
            f"pastset runs from {package}, which is neither an installed distribution nor part of a source tree; "
            "install it with pip and run pypsdeploy from that installation"
        )
    return root


def _build_from_source(root: Path, dest: Path) -> str:
    """``pip wheel`` of the source tree at ``root``, in a scratch copy of its top-level files and package."""
    offline = importlib.util.find_spec("setuptools") is not None and (
        importlib.util.find_spec("wheel") is not None or _setuptools_has_bdist_wheel()
    )
    with tempfile.TemporaryDirectory(prefix="pastset-build-") as scratch:
        copy = Path(scratch) / "src"
        copy.mkdir()
        for item in root.iterdir():
            if item.is_file():
                shutil.copy2(item, copy / item.name)
        shutil.copytree(root / "pastset", copy / "pastset", ignore=shutil.ignore_patterns("__pycache__"))
        out = Path(scratch) / "out"
        argv = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps", "-q", "-w", str(out)]
        argv += ["--no-build-isolation"] if offline else []
        log.info("building pastset from %s%s", root, "" if offline else " (pip fetches setuptools for the build)")
        _pip([*argv, str(copy)], f"building pastset from {root}")
        built = sorted(out.glob("pastset-*.whl"))
        if not built:
            raise WheelhouseError(f"building pastset from {root} made no wheel")
        shutil.copy2(built[0], dest / built[0].name)
        return built[0].name


def _setuptools_has_bdist_wheel() -> bool:
    return importlib.util.find_spec("setuptools.command.bdist_wheel") is not None


def _pip(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise WheelhouseError(f"{what} failed: {err}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"pip exited with status {done.returncode}"])[-1]
        raise WheelhouseError(f"{what} failed: {last}")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(name: str, needed_by: str) -> metadata.Distribution:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise WheelhouseError(f"{needed_by} needs {name}, which is not installed here") from None


def _closure(requires: list[str]) -> list[metadata.Distribution]:
    """The installed distributions these requirements need, directly or not (extras followed).

    Environment markers are judged by what is installed here: a requirement
    with a marker that is not installed is taken to be one this Python does
    not need.  Extras count only when asked for.
    """
    found: dict[str, tuple[metadata.Distribution, set[str]]] = {}
    todo = [(r, frozenset[str](), "pastset") for r in requires]
    while todo:
        requirement, extras, parent = todo.pop()
        match = _REQUIREMENT.match(requirement)
        if not match:
            log.warning("cannot read the requirement %r of %s; it is not shipped", requirement, parent)
            continue
        marker = match.group("marker") or ""
        if re.search(r"\bextra\b", marker):
            wanted = {_normal(e) for e in re.findall(r"""\bextra\s*==\s*['"]([^'"]+)['"]""", marker)}
            if not wanted & extras:
                continue
        key = _normal(match.group("name"))
        if key in ("pastset", "pip"):
            continue
        asked = {_normal(e) for e in (match.group("extras") or "").split(",") if e.strip()}
        if key in found:
            dist, had = found[key]
            if asked <= had:
                continue
            had |= asked
        else:
            try:
                dist = metadata.distribution(match.group("name"))
            except metadata.PackageNotFoundError:
                if marker:
                    continue
                raise WheelhouseError(f"{parent} needs {match.group('name')}, which is not installed here") from None
            found[key] = (dist, set(asked))
        name = dist.metadata["Name"]
        todo += [(r, frozenset(found[key][1]), name) for r in dist.requires or []]
    return [dist for dist, _ in found.values()]


def _wheel_of(dist: metadata.Distribution, dest: Path) -> str:
    """A wheel of an installed distribution: packed back, or else fetched by pip."""
    try:
        return _repack(dist, dest)
    except WheelhouseError as err:
        spec = f"{dist.metadata['Name']}=={dist.version}"
        log.info("%s; asking pip for %s", err, spec)
        before = set(os.listdir(dest))
        argv = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps", "-q", "-w", str(dest)]
        _pip([*argv, spec], f"getting a wheel of {spec} ({err})")
        new = sorted(set(os.listdir(dest)) - before) or sorted(p.name for p in dest.glob(f"*{dist.version}*.whl"))
        if not new:
            raise WheelhouseError(f"pip made no wheel of {spec}") from None
        return new[0]


def _repack(dist: metadata.Distribution, dest: Path) -> str:
    """Pack an installed distribution back into a wheel in ``dest``; return its file name."""
    name, version = dist.metadata["Name"], dist.version
    files = dist.files
    wheel_text = dist.read_text("WHEEL")
    if files is None or wheel_text is None:
        raise WheelhouseError(f"{name} {version} was installed without a RECORD or WHEEL file")
    tags = [line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")]
    info_dir = next((f.parts[0] for f in files if f.parts and f.parts[0].endswith(".dist-info")), None)
    if not tags or info_dir is None:
        raise WheelhouseError(f"{name} {version} has no wheel tags or .dist-info directory")
    parts = [".".join(dict.fromkeys(t.split("-")[i] for t in tags)) for i in range(3)]
    filename = f"{re.sub(r'[-_.]+', '_', name)}-{version}-{'-'.join(parts)}.whl"
    site = Path(str(dist.locate_file(""))).resolve()
    scripts = Path(sysconfig.get_path("scripts")).resolve()
    prefix = Path(sys.prefix).resolve()
    generated = {ep.name for ep in dist.entry_points if ep.group in ("console_scripts", "gui_scripts")}
    data_dir = f"{info_dir[: -len('.dist-info')]}.data"
    record: list[str] = []
    target = dest / filename
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as wheel:
        for file in files:
            text = file.as_posix()
            if "__pycache__" in file.parts or text.endswith(".pyc"):
                continue
            if file.parts[0] == info_dir and file.name in _LEFT_OUT:
                continue
            path = (site / file).resolve()
            arcname: str | None = text
            if text.startswith("../"):
                arcname = _data_name(path, data_dir, scripts, prefix, generated)
            if arcname is None or not path.is_file():
                continue
            data = path.read_bytes()
            if arcname.startswith(f"{data_dir}/scripts/") and data.startswith(b"#!") and b"python" in data[:128]:
                data = b"#!python" + data[data.index(b"\n") :] if b"\n" in data else b"#!python\n"
            entry = zipfile.ZipInfo(arcname, _EPOCH)
            entry.external_attr = (path.stat().st_mode & 0xFFFF) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(entry, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arcname},sha256={digest},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        entry = zipfile.ZipInfo(f"{info_dir}/RECORD", _EPOCH)
        entry.external_attr = 0o644 << 16
        wheel.writestr(entry, "\n".join(record) + "\n", zipfile.ZIP_DEFLATED)
    log.debug("packed %s %s back into %s", name, version, filename)
    return filename


def _data_name(path: Path, data_dir: str, scripts: Path, prefix: Path, generated: set[str]) -> str | None:
    """Where a file installed outside site-packages goes in a wheel (None: left out)."""
    if path.parent == scripts:
        if re.sub(r"[\d.]+$", "", path.name) in generated or path.name in generated:
            return None  # a launcher pip writes from entry_points.txt
        return f"{data_dir}/scripts/{path.name}"
    if path.is_relative_to(prefix):
        return f"{data_dir}/data/{path.relative_to(prefix).as_posix()}"
    return None


def _digest(dest: Path, wheels: list[str]) -> str:
    """A digest of what the wheels hold (names, sizes and CRCs of their entries), not of the zip bytes."""
    total = hashlib.sha256()
    for name in sorted(wheels):
        total.update(name.encode() + b"\0")
        with zipfile.ZipFile(dest / name) as wheel:
            for entry in sorted(wheel.infolist(), key=lambda e: e.filename):
                if not entry.filename.endswith(".dist-info/RECORD"):
                    total.update(f"{entry.filename}\0{entry.file_size}\0{entry.CRC}\0".encode())
    return total.hexdigest()[:16]
