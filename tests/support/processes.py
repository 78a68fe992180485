"""Service parts as real child processes, configured only through BATCHSYNC_* variables."""

import os
import subprocess
import sys

from pydantic import SecretStr

from service.config import Settings

WORKER_MAIN = "import asyncio; from service.bootstrap import run_worker; from service.config import Settings; " \
              "asyncio.run(run_worker(Settings()))"


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSYNC_")}
    for name, value in settings.model_dump(exclude={"jwt_public_key", "data_dir"}).items():
        if isinstance(value, SecretStr):  # the secret key, the JWT secret, the bus password: the value, not '****'
            value = value.get_secret_value()
        if value is not None:
            env[f"BATCHSYNC_{name.upper()}"] = str(value)
    return env


def start_worker(settings: Settings, worker_id: str) -> subprocess.Popen:
    env = settings_env(settings)
    env["BATCHSYNC_WORKER_ID"] = worker_id
    return subprocess.Popen([sys.executable, "-c", WORKER_MAIN], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
