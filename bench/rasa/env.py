"""Rasa 3.6's own world: a Python 3.10 venv, a trained model, a ``rasa run`` server.

Rasa OSS 3.6 runs only on Python ≤ 3.10, hotline-bot on 3.11, so Rasa lives in
``bench/rasa/var/venv`` (gitignored) built from the pinned
``bench/rasa/requirements.txt``, and is driven as subprocesses: nothing in
hotline-bot imports rasa. Models are cached in ``bench/rasa/var/models`` by KB
version and epochs, so one training serves many benchmark runs (on 2 shared
cores 20 epochs took 38 min; 300 epochs is a job of several hours).

    python -m bench.rasa.env setup                 # venv + pinned install (once)
    python -m bench.rasa.env train [--epochs 300]  # export KB -> train under nice -n 19 (cached)
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.live import free_port
from bench.rasa.export import DEFAULT_EPOCHS, export
from bot.config import Settings
from bot.kb import load_knowledge_base

HERE = Path(__file__).resolve().parent
VAR = HERE / "var"
VENV = VAR / "venv"
MODELS = VAR / "models"
REQUIREMENTS = HERE / "requirements.txt"
PYTHON310 = os.environ.get("RASA_PYTHON", "/root/.pyenv/versions/3.10.13/bin/python")
# No phoning home from a benchmark (and no network here anyway).
RASA_ENV = {"RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2", "SQLALCHEMY_SILENCE_UBER_WARNING": "1"}


def rasa_bin() -> Path:
    return VENV / "bin" / "rasa"


def setup(python: str = PYTHON310) -> Path:
    """Create the venv and install the pinned requirements (a no-op when already done)."""
    stamp = VENV / ".requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if rasa_bin().exists() and stamp.exists() and stamp.read_text() == wanted:
        return VENV
    if not (VENV / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--no-deps", "-r", str(REQUIREMENTS)], check=True)
    subprocess.run([*pip, "check"], check=False)
    stamp.write_text(wanted)
    return VENV


def model_path(epochs: int) -> Path:
    kb = load_knowledge_base(Settings().knowledge_dir)
    return MODELS / f"hotline-{kb.version}-e{epochs}.tar.gz"


def train(epochs: int = DEFAULT_EPOCHS, nice: int = 19) -> Path:
    """Export the KB and train (cached by KB version + epochs): returns the model file."""
    if not rasa_bin().exists():
        raise SystemExit(f"no Rasa venv: run `python -m bench.rasa.env setup` first ({VENV})")
    kb = load_knowledge_base(Settings().knowledge_dir)
    target = model_path(epochs)
    if target.exists():
        print(f"cached model: {target}")
        return target
    project = VAR / f"project-{kb.version}-e{epochs}"
    shutil.rmtree(project, ignore_errors=True)
    export(kb, project, epochs)
    MODELS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log_path = VAR / f"train-{kb.version}-e{epochs}.log"
    print(f"training {target.name} (epochs {epochs}, nice {nice}); log {log_path}", flush=True)
    with open(log_path, "wb") as log:
        subprocess.run(["nice", "-n", str(nice), str(rasa_bin()), "train", "--config", "config.yml",
                        "--domain", "domain.yml", "--data", "data", "--out", str(MODELS),
                        "--fixed-model-name", target.name.removesuffix(".tar.gz")],
                       cwd=project, env=os.environ | RASA_ENV, stdout=log, stderr=subprocess.STDOUT, check=True)
    (VAR / f"{target.name}.seconds").write_text(f"{time.perf_counter() - started:.0f}\n")
    print(f"trained in {time.perf_counter() - started:.0f}s -> {target}")
    return target


class RasaServer:
    """``rasa run --enable-api`` (REST channel at /webhooks/rest/webhook, NLU at /model/parse)."""

    def __init__(self, url: str, process: subprocess.Popen, log_path: Path, started_at: float, healthy_at: float):
        self.url, self.process, self.log_path = url, process, log_path
        self.started_at, self.healthy_at = started_at, healthy_at

    @property
    def pid(self) -> int:
        return self.process.pid


def start_rasa(model: Path, log_dir: Path, timeout: float = 300) -> RasaServer:
    """Start Rasa's server on a free loopback port and wait until the model is loaded."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"rasa-{port}.log"
    with open(log_path, "wb") as log:
        started_at = time.perf_counter()
        process = subprocess.Popen(
            [str(rasa_bin()), "run", "--enable-api", "--model", str(model), "--interface", "127.0.0.1",
             "--port", str(port), "--credentials", str(HERE / "credentials.yml")],
            cwd=log_dir, env=os.environ | RASA_ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"rasa exited early:\n{log_path.read_text(errors='replace')[-4000:]}")
            try:
                status = client.get(url + "/status")
                if status.status_code == 200 and status.json().get("model_file"):
                    return RasaServer(url, process, log_path, started_at, time.perf_counter())
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    stop_rasa_process(process)
    raise RuntimeError(f"rasa did not load its model in {timeout}s:\n{log_path.read_text(errors='replace')[-4000:]}")


def stop_rasa_process(process: subprocess.Popen) -> None:
    import signal

    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.rasa.env", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_setup = sub.add_parser("setup", help="create bench/rasa/var/venv with the pinned requirements")
    p_setup.add_argument("--python", default=PYTHON310)
    p_train = sub.add_parser("train", help="export the KB and train a model (cached)")
    p_train.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p_train.add_argument("--nice", type=int, default=19)
    args = parser.parse_args(argv)
    if args.command == "setup":
        print(f"Rasa venv ready: {setup(args.python)}")
    else:
        print(train(args.epochs, args.nice))
    return 0


if __name__ == "__main__":
    sys.exit(main())
