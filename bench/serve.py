"""Start one peer server on 127.0.0.1:PORT serving MODULE:ATTR.

Runs inside bench/.venv (started by servers.py).  Access logs are switched
off for every peer, as runserver.py runs with --quiet.

Usage: python serve.py {werkzeug,django,wsgiref,cheroot} MODULE:ATTR PORT [--reload]
"""

import argparse
import importlib
import logging
import sys


def load_app(spec):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr or "app")


def serve_werkzeug(spec, port, reload):
    from werkzeug.serving import run_simple

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    run_simple(
        "127.0.0.1",
        port,
        load_app(spec),
        threaded=True,
        use_reloader=reload,
        reloader_type="stat",
    )


def serve_django(spec, port, reload):
    import django
    from django.conf import settings

    settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], INSTALLED_APPS=[])
    django.setup()
    logging.getLogger("django.server").setLevel(logging.ERROR)

    from django.core.servers import basehttp

    def main():
        basehttp.run("127.0.0.1", port, load_app(spec), ipv6=False, threading=True)

    if reload:
        from django.utils import autoreload

        autoreload.run_with_reloader(main)
    else:
        main()


def serve_wsgiref(spec, port, reload):
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format, *args):
            pass

    make_server("127.0.0.1", port, load_app(spec), handler_class=QuietHandler).serve_forever()


def serve_cheroot(spec, port, reload):
    from cheroot import wsgi

    wsgi.Server(("127.0.0.1", port), load_app(spec)).start()


SERVERS = {
    "werkzeug": serve_werkzeug,
    "django": serve_django,
    "wsgiref": serve_wsgiref,
    "cheroot": serve_cheroot,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("app")
    parser.add_argument("port", type=int)
    parser.add_argument("--reload", action="store_true")
    args = parser.parse_args(argv)
    if args.reload and args.server not in ("werkzeug", "django"):
        parser.error(f"{args.server} has no reloader")
    try:
        SERVERS[args.server](args.app, args.port, args.reload)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
