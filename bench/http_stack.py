"""The production shape on this machine for benchmarks: a broker, the API and a worker as separate
processes talking over real sockets, so the worker's memory can be read on its own."""

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from service.auth import mint_token
from service.config import Settings
from tests.support.brokers import free_port, noida, tansu
from tests.support.processes import settings_env

API_MAIN = ("import asyncio; from service.bootstrap import run_api; from service.config import Settings; "
            "asyncio.run(run_api(Settings()))")
WORKER_MAIN = ("import asyncio; from service.bootstrap import run_worker; from service.config import Settings; "
               "asyncio.run(run_worker(Settings()))")
SECRET = "bench-secret-0123456789abcdef"


@dataclass
class HttpStack:
    settings: Settings
    base_url: str
    token: str
    worker: subprocess.Popen
    api: subprocess.Popen

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def worker_peak_rss_mb(self) -> float:
        """The worker's resident-set high-water mark (VmHWM), in MiB."""
        with open(f"/proc/{self.worker.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")


def _spawn(code: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def api_up(base_url: str, api: subprocess.Popen, *, within: float) -> bool:
    """Whether the API process answers `/healthz` within `within` seconds (False as soon as it exits)."""
    deadline = time.monotonic() + within
    while time.monotonic() <= deadline and api.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return True
        time.sleep(0.2)
    return False


@contextlib.contextmanager
def http_stack(state_dsn: str, broker_kind: str = "tansu", **overrides: object) -> Iterator[HttpStack]:
    """API and worker processes on a fresh broker (`tansu` or `noida`) and the state database `state_dsn`."""
    with (tansu() if broker_kind == "tansu" else noida()) as broker:
        port = free_port()
        settings = Settings(database_url=state_dsn, kafka_bootstrap=broker.bootstrap, jwt_secret=SECRET,
                            secret_key=SECRET, file_roots=tempfile.gettempdir(), http_port=port,
                            topic_prefix=f"bench{os.getpid()}.batch.sync",
                            **{"reply_fetch_max_wait_ms": 10, "request_fetch_max_wait_ms": 10, **overrides})
        env = settings_env(settings)
        worker = _spawn(WORKER_MAIN, env)
        api = _spawn(API_MAIN, env)
        try:
            base_url = f"http://127.0.0.1:{port}"
            if not api_up(base_url, api, within=30):
                raise TimeoutError("API did not come up")
            time.sleep(4)  # the worker's first group join
            yield HttpStack(settings, base_url, mint_token(settings, "bench", ["*:*:*"]), worker, api)
        finally:
            for process in (api, worker):
                process.terminate()
            for process in (api, worker):
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
