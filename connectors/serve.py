"""Production server: gunicorn, one uvicorn worker process per core, the app preloaded.

The master loads everything once — migrations, the KB, the encoder weights, the
index, one warm-up inference — then forks the workers, which share those pages
copy-on-write (``gc.freeze`` keeps the garbage collector from touching them).
Each worker then starts its own background threads (notifier, outbox senders,
WeChat recovery) and its own database connections. Requests run Flask on a
bounded thread pool; long polls wait on the event loop (``connectors/asgi.py``).
"""
from __future__ import annotations

import gc
import logging
import os
import time

from gunicorn.app.base import BaseApplication

from bot.config import Settings

log = logging.getLogger(__name__)


def worker_count(settings: Settings) -> int:
    return settings.server.workers or max(1, os.cpu_count() or 1)


class HotlineServer(BaseApplication):
    def __init__(self, settings: Settings, host: str, port: int):
        self.settings = settings
        self.host, self.port = host, port
        self.services = None
        super().__init__()

    def load_config(self) -> None:
        server = self.settings.server
        services_ref = self

        def post_fork(_arbiter, _worker):
            services_ref.services.db.dispose()  # connections are never shared with the master
            services_ref.services.start()

        def worker_exit(_arbiter, worker):
            if services_ref.services is not None:
                services_ref.services.close()
            from connectors.metrics import worker_exited

            worker_exited(worker.pid)  # its live samples no longer count

        for key, value in {
            "bind": f"{self.host}:{self.port}",
            "workers": worker_count(self.settings),
            "worker_class": "uvicorn_worker.UvicornWorker",
            "preload_app": True,
            "timeout": 60,
            "graceful_timeout": 20,
            "keepalive": server.timeout_keep_alive,
            "worker_connections": server.max_connections,
            "backlog": 2048,
            "post_fork": post_fork,
            "worker_exit": worker_exit,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "hotline-bot",
            "control_socket_disable": True,  # one fixed path per machine: several servers would clash
        }.items():
            self.cfg.set(key, value)

    def load(self):
        from bot.services import Services
        from connectors.app import create_app
        from connectors.asgi import create_asgi

        from connectors.metrics import prepare_multiprocess

        prepare_multiprocess(self.settings.data_dir, self.port)  # before any metric exists, before the fork
        started = time.perf_counter()
        self.services = Services.build(self.settings)
        self.services.bot.warm_up()
        app = create_app(self.services)
        asgi = create_asgi(app, self.services)
        gc.collect()
        gc.freeze()  # what is loaded now stays shared with the workers
        bot = self.services.bot
        log.info("hotline-bot ready in %.1fs: %d entries, KB %s, encoder %s; %d worker(s) on http://%s:%d",
                 time.perf_counter() - started, len(bot.kb.entries), bot.kb.version, self.settings.encoder,
                 worker_count(self.settings), self.host, self.port)
        return asgi


def serve(settings: Settings, host: str, port: int) -> None:
    # One BLAS/OpenMP thread per request thread: concurrent requests each encode on their own
    # thread, and a threaded BLAS under many callers spends its time fighting over cores. The
    # variables must be set before numpy loads its BLAS (threadpoolctl only limits loaded ones).
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(settings.encoder_threads))
    if settings.api_token is None and not settings.open_read_api:
        log.info("staff read API: console sessions only (set HOTLINE_API_TOKEN for scripts)")
    HotlineServer(settings, host, port).run()
