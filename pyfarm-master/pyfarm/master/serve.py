"""Serving the app: gunicorn where it is installed, else Werkzeug."""

from pyfarm.core.logger import getLogger

logger = getLogger("master.serve")


def serve(host, port, workers=2, threads=4):
    """Serve ``create_app()`` on ``host:port`` until interrupted."""
    from pyfarm.master.app import create_app

    app = create_app()  # fail here, before forking, on a bad setup
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        logger.warning("gunicorn is not installed; serving with Werkzeug")
        app.run(host=host, port=port, threaded=True)
        return

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", None)
            self.cfg.set("graceful_timeout", 10)

        def load(self):
            return create_app()

    logger.info("serving on http://%s:%s with %d workers", host, port,
                workers)
    Server().run()
