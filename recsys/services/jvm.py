"""What the JVM servers need: a java binary and their runtime jars, fetched once by Maven.

The jars live outside the clone, in ``<cache_dir>/jars/<service>-<version>/``, and a folder
counts as complete only once its ``.complete`` stamp is written, so a warm ``up`` never runs
Maven and an interrupted download is redone rather than half-used.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from importlib import resources
from pathlib import Path

from recsys.services.base import ServiceError
from recsys.services.proc import exclusive, run_logged

COMPLETE_STAMP = ".complete"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
# A cold fetch of Cassandra is ~80 MB over Maven Central; give slow links room.
_MAVEN_TIMEOUT_S = 1200


def pom_text(service: str) -> str:
    """The pom shipped in ``recsys/services/maven/<service>/pom.xml``."""
    ref = resources.files("recsys.services").joinpath("maven", service, "pom.xml")
    return ref.read_text(encoding="utf-8")


def pinned_version(pom: str, prop: str) -> str:
    """The value of ``<properties><prop>`` in a pom: the one place a server version is pinned."""
    root = ET.fromstring(pom)  # noqa: S314 (our own pom, shipped in the package)
    node = root.find(f"m:properties/m:{prop}", _POM_NS)
    if node is None or not (node.text or "").strip():
        raise ServiceError(f"pom.xml pins no <{prop}>")
    return (node.text or "").strip()


def jar_dir(cache_dir: Path, service: str, version: str) -> Path:
    return cache_dir / "jars" / f"{service}-{version}"


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_STAMP).is_file()


def ensure_jars(service: str, version: str, cache_dir: Path, log_path: Path) -> Path:
    """Return the complete jar folder for ``service``, running Maven only when it is missing.

    Maven's own repository stays ~/.m2; its output is appended to ``log_path``.
    """
    dest = jar_dir(cache_dir, service, version)
    if is_complete(dest):
        return dest
    # Locked per jar folder, not per ~/.m2: Kafka's and Cassandra's fetches run at once
    # (about 15 s off a cold start). Maven writes each download to a temporary file and renames
    # it, so two runs that share an artifact do not tear it; the zip check below would
    # catch one that did, before the stamp makes it permanent.
    with exclusive(dest.with_name(f".{dest.name}.lock")):
        if is_complete(dest):
            return dest
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceError(
                f"{service}: Maven (mvn) is not on PATH; it fetches the server jars once "
                "(apt-get install maven)"
            )
        # Maven runs on a copy of the pom in the cache, so nothing is written into the clone
        # (or into a read-only installed package).
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        try:
            (work / "pom.xml").write_text(pom_text(service), encoding="utf-8")
            out = work / "jars"
            _run_maven(mvn, work / "pom.xml", out, service, log_path)
            jars = sorted(out.glob("*.jar"))
            if not jars:
                raise ServiceError(f"{service}: Maven copied no jars (see {log_path})")
            damaged = [j.name for j in jars if not zipfile.is_zipfile(j)]
            if damaged:
                raise ServiceError(
                    f"{service}: damaged jars from ~/.m2: {', '.join(damaged)}; delete them "
                    "there and run up again"
                )
            (out / COMPLETE_STAMP).write_text(f"{service} {version}\n", encoding="utf-8")
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(out, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest


def _run_maven(mvn: str, pom: Path, out: Path, service: str, log_path: Path) -> None:
    argv = [
        mvn,
        "--batch-mode",
        "--no-transfer-progress",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={out}",
    ]
    try:
        code = run_logged(argv, log_path, _MAVEN_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        raise ServiceError(
            f"{service}: Maven did not finish within {_MAVEN_TIMEOUT_S} s (see {log_path})"
        ) from err
    if code != 0:
        raise ServiceError(
            f"{service}: Maven failed to fetch the server jars, exit {code} (see {log_path})"
        )


def find_jar(folder: Path, prefix: str) -> Path:
    """The jar in ``folder`` named ``<prefix>-<version>.jar`` (e.g. the jamm agent)."""
    pattern = re.compile(rf"{re.escape(prefix)}-\d[^/]*\.jar")
    for jar in sorted(folder.glob(f"{prefix}-*.jar")):
        if pattern.fullmatch(jar.name):
            return jar
    raise ServiceError(f"no {prefix}-<version>.jar in {folder}")


def find_java() -> str:
    """The java binary: ``$JAVA_HOME/bin/java`` when set, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise ServiceError(
            "java is not on PATH and JAVA_HOME is unset; Kafka and Cassandra need a JDK 17 "
            "(apt-get install openjdk-17-jdk-headless)"
        )
    return java


def parse_java_major(version_output: str) -> int:
    """The major version from ``java -version`` output (``1.8.0_x`` -> 8, ``17.0.15`` -> 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        raise ServiceError(f"cannot read the Java version from: {version_output.strip()[:80]}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


@functools.cache
def java_major(java: str) -> int:
    done = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    return parse_java_major(done.stderr + done.stdout)


def require_java(service: str, java: str, allowed: range) -> None:
    """Fail with one line when ``java`` is a version the server does not run on."""
    major = java_major(java)
    if major not in allowed:
        raise ServiceError(
            f"{service} needs Java {allowed.start}-{allowed.stop - 1}, but {java} is Java "
            f"{major}; point JAVA_HOME at a JDK 17"
        )
