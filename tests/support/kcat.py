"""kcat for tests: Debian's build links librdkafka 2.0.2, which fails the ApiVersions handshake with Tansu
(docs/brokers.md); the librdkafka 2.16 inside the confluent-kafka wheel works. `kcat_env()` returns an
environment whose LD_LIBRARY_PATH points at a folder holding a `librdkafka.so.1` link to it."""

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

SKIP_REASON = "kcat is not installed (Debian/Ubuntu: apt-get install -y kcat)"


def wheel_librdkafka() -> Path | None:
    spec = importlib.util.find_spec("confluent_kafka")
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = Path(next(iter(spec.submodule_search_locations))).parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka-*.so.1"))
    return found[0] if found else None


def kcat_env(folder: str | None = None) -> dict[str, str] | None:
    """The environment to run kcat in, or None when kcat is absent."""
    if shutil.which("kcat") is None:
        return None
    env = dict(os.environ)
    library = wheel_librdkafka()
    if library is not None:
        folder = folder or tempfile.mkdtemp(prefix="kcat-lib-")
        link = Path(folder) / "librdkafka.so.1"
        if not link.exists():
            link.symlink_to(library)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [folder, env.get("LD_LIBRARY_PATH")]))
    return env
