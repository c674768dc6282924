#!/usr/bin/env python3
"""runserver.py -- a single-file WSGI development server, standard library only.

    python runserver.py app:application 8000

It serves any WSGI application (PEP 3333) the way Django's ``manage.py
runserver`` serves a Django project: HTTP/1.1 with keep-alive, an autoreloader,
static files, HTTPS, and error messages written for a person.  Copy this file
into your project if you like; it imports nothing outside the standard library.

Map of the file, in reading order:

    constants and limits          Limits
    HTTP grammar and parsing      BadRequest, parse_request_head(), parse_chunk_header(),
                                    parse_forwarded() (RFC 7239)
    request body readers          ContentLengthInput, read_chunked_body()
    WSGI request handler          WSGIRequestHandler(socketserver.BaseRequestHandler);
                                    TakeOverSocket (an app takes the connection over:
                                    WebSockets); behind a proxy: ProxyTrust,
                                    forwarded_environ()
    error reports                 build_report(): a traceback as plain data (Report,
                                    ExceptionInfo, Frame), and as Python's text
    pages                         fill() and the page templates; render_error() makes
                                    a 500 the error page (--debug), text or a note
    file serving                  FileWrapper, StaticFiles, RootPath (an app under a path)
    live reload                   LiveReload (a server's event streams), ScriptInjector
                                    (the script in a page), start_static_watcher()
    server classes                Poller (epoll or a selector: the event loop's wait)
                                  WSGIServer(socketserver.TCPServer): an event loop
                                    +-- UnixWSGIServer
                                  LoopThreadingMixIn(socketserver.ThreadingMixIn):
                                    the loop's thread serves quick requests itself,
                                    a watchdog hands the loop on when one runs long
                                    (then, for a while, the loop hands new and slow
                                    connections to pool threads the watchdog starts)
                                  make_server() composes, as socketserver suggests,
                                  type('WSGIServer', (LoopThreadingMixIn, WSGIServer), {});
                                  serving(): one in a thread for a `with` block (tests)
    reloader                      FileWatcher; library_modules() (what a template preloads)
                                  run_supervisor() -> Supervisor, Worker, TemplateProcess
                                  run_template() -> Template, ProjectImportBlocker
                                  fork_first_worker(), fork_from_template(), spawn_worker()
                                  Windows: WindowsWorker, connect_to_supervisor_windows()
    app loading                   load_app(), demo_app, error_app() (while an app cannot run)
    frameworks                    let_exceptions_through(): Flask's PROPAGATE_EXCEPTIONS;
                                    socket_environ(): the keys WebSocket libraries
                                    take the connection from;
                                    serve_django_static_files(); template_directories()
                                    (Flask's and Django's, for the reloader);
                                    django_checks() (system checks, migrations)
    settings                      resolve_settings() -> Settings: each option from the
                                    command line, its RUNSERVER_* variable, a .env file
                                    or its default, and where it came from
    CLI                           add_arguments(), handle(), check(), run(),
                                    inner_run(), main(); make_ssl_context() and
                                    --cert adhoc's certificate

Process model with the reloader on (the default):

    supervisor            the process you started
        +-- template      started as a worker is; keeps the libraries imported
        |     +-- worker  forked from the template at each reload
        +-- worker        the first one (forked), or one started afresh

The supervisor (run_supervisor()) owns the listening socket and never imports
your app.  It starts the template and the workers and learns what they did
from their messages only, on pipes and a unix socket (a worker's libraries
and "reload", the template's "forked PID" and "exited PID STATUS"); an exit
status is never read as a request.

The template (run_template()) owns the preloaded modules: those the last
worker imported that are not your project's (the standard library and
site-packages).  It learns from the supervisor's messages what to import and
when to fork a worker, and reports the pids and exit statuses of the workers
it forked, as their parent.

A worker (inner_run()) owns the app: it takes the socket, imports the app,
serves it and polls its files.  It tells the supervisor its library modules,
"reload" on a change, "stop" after a mistake in APP, and learns that the
supervisor is gone when a pipe from it reaches its end.

The first worker is forked from the supervisor (fork_first_worker()), which
saves a Python start-up; later ones are forked from the template, which also
saves the imports of every library.  Where there can be no template (--no-warm,
no fork without exec, runserver.run() from your own program, a debugger) or
it may not fork (a file it imported changed, a library it imported started a
thread), a worker is started afresh (spawn_worker(), worker_command()).
The supervisor reads the .env files to resolve the options but keeps their
variables out of its own environment, and so does the template: each worker
loads them afresh before it imports the app, so an edited .env file reloads
with its new values.

On Windows (no fork, no descriptor passed by number) there is no template
and every worker is started afresh: it connects to the supervisor over
loopback with a token and receives the listening socket from socket.share();
that connection is its lifeline, carries its messages, and brings "stop"
where POSIX sends SIGTERM.

Connections that arrive while a worker restarts wait in the listen backlog of
the socket the supervisor holds, so a reload never refuses a connection.
A page open in a browser (live reload) learns of a reload the same way: its
event stream ends, it reconnects through the backlog, and the next worker
greets it with another id.  With
--noreload the process you start is the worker, without supervision.
"""

# Modules needed only on rare paths (ssl, mimetypes, html, email.utils, shlex,
# termios, site, sysconfig, ast, tempfile, http, subprocess, urllib.parse,
# reprlib, ipaddress, hashlib, shutil) are imported where they are used: a
# reload may start a new process, so start-up time counts.
import argparse
import collections
import contextlib
import errno
import fnmatch
import functools
import glob
import importlib
import importlib.util
import io
import itertools
import logging
import os
import queue
import re
import select
import selectors
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback

__version__ = "0.1.0"

__all__ = [
    "ACCESS_FIELDS", "AppSpecError", "BadRequest", "FileWrapper", "Limits", "LoopThreadingMixIn",
    "RootPath", "StaticFiles",
    "UsageError", "WSGIRequestHandler", "WSGIServer", "UnixWSGIServer", "demo_app",
    "is_reloader_worker", "load_app", "main", "make_server", "make_ssl_context", "run",
    "serving", "__version__",
]

logger = logging.getLogger("runserver")


# ---- Constants and limits -------------------------------------------------

DEFAULT_HOST = "127.0.0.1"
DEFAULT_HOST_IPV6 = "::1"
DEFAULT_PORT = 8000
NEXT_FREE_PORTS = 10            # no ADDRPORT and DEFAULT_PORT taken: try the next 10 (to 8010)
NETWORK_ADDRESSES_SHOWN = 4     # bound to every interface: the banner's "on your network" lines
# A UDP connect() to these sends nothing, but picks the interface that routes
# there (documentation addresses, RFC 5737 and RFC 3849: no host has them).
ROUTE_PROBE_ADDRESSES = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}
ENV_FILES = (".env", ".flaskenv")   # read from the working directory; the first wins
LISTEN_BACKLOG = 1024           # connections that wait while a worker restarts
FIRST_REQUEST_GRACE = 0.2       # a connection this new is not idle: its request is on the way
ACCEPT_RETRY_DELAY = 0.05       # out of file descriptors: the wait before accepting again
SELECT_MAX_SOCKETS = 500        # Windows' select() takes 512 sockets (FD_SETSIZE): the
                                # connections the loop waits on there, at most
SERVER_SOFTWARE = "runserver.py/%s Python/%s" % (__version__, sys.version.split()[0])
# --forwarded-allow-ips: the proxies whose forwarding headers --proxy-headers
# believes by default: this machine's, over loopback or a unix socket.
DEFAULT_FORWARDED_ALLOW_IPS = ("127.0.0.0/8", "::1", "unix")
FORWARDED_ORIGINAL = "runserver.original."   # + REMOTE_ADDR...: the connection's own values

# --cert adhoc: a self-signed certificate made by the openssl command, kept in
# the user's cache directory and made anew when it has under a month left.
ADHOC_CERT_DAYS = 365           # within the 825 days macOS accepts for a trusted certificate
ADHOC_RENEW_DAYS = 30
ADHOC_CERT_FILE = "localhost.pem"   # key and certificate, in CACHE_DIRECTORY_NAME
CACHE_DIRECTORY_NAME = "runserver.py"
OPENSSL_TIMEOUT = 60            # seconds openssl may take to make a key
# openssl req's configuration: no system openssl.cnf needed (Windows has none).
ADHOC_OPENSSL_CONFIG = """\
[req]
distinguished_name = subject
x509_extensions = extensions
prompt = no

[subject]
CN = localhost
O = runserver.py development certificate

[extensions]
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

USAGE_EXIT_CODE = 2             # the user's mistake: bad option, unknown module...
# The keys the banner names: Windows' consoles have Ctrl-Break (Django's banner
# names it there); Ctrl-C stops the server on every system.
QUIT_KEYS = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM) + (
    (signal.SIGBREAK,) if hasattr(signal, "SIGBREAK") else ())  # Windows' Ctrl-Break
# recv() and send() flags where the system has them (not Windows: there a
# connection keeps Python's timeout, and a poll before each call).
MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)

SPOOL_MEMORY_LIMIT = 1 << 20    # chunked bodies above this go to a temporary file
DRAIN_LIMIT = 1 << 20           # unread body bytes discarded to keep a connection
FILE_BLOCK_SIZE = 1 << 18       # block reads where sendfile cannot be used
RECV_SIZE = 1 << 16
SEND_CHECK_INTERVAL = 0.25      # a client reading slower than the server writes: how often
                                # to look whether bytes left the send buffer (--body-timeout)
TLS_RECORD_SIZE = 1 << 14       # TLS sends go a record at a time: a timed-out one is resent

SPARE_THREAD_TIMEOUT = 1.0      # a pool thread with nothing to do waits this long for work
PROMOTE_AFTER = 0.005           # a request the loop runs this long gets the loop taken over
HAND_OFF_PERIOD = 1.0           # after a request ran that long, the loop hands requests to
                                # threads for this long rather than serving them in place
WATCH_INTERVAL = 0.005          # how often the watchdog looks while requests come
WATCH_IDLE_TICKS = 20           # the watchdog sleeps after this many ticks with nothing to watch

DEFAULT_RELOAD_INTERVAL = 0.25  # --reload-interval: seconds between two polls
RELOAD_DEBOUNCE = 0.05          # saves this close together cause one reload
MTIME_SLACK_NS = 20_000_000     # file times come from the kernel's coarse clock: up to a
                                # tick behind time.time_ns(), so compare with that margin
SLOW_POLL_EVERY = 8             # site-packages and new-file globs: every Nth poll
HOT_FILES = 8                   # the files modified last, likely the next ones saved,
HOT_POLL_INTERVAL = 0.05        # ... are also polled this often between two polls
POLL_CPU_BUDGET = 0.01          # share of a core polling every file may take (big projects)
TEMPLATE_PATIENCE = 10.0        # a reload waits this long at most for the template's imports
TEMPLATE_DELAY = 1.0            # the first template starts this long after the first worker
                                # (or at the first reload): not during the first requests
EXIT_GRACE = 0.5                # a worker's last messages may come this long after its exit
WORKER_CONNECT_TIMEOUT = 10.0   # Windows: a started worker's connection to its supervisor
# Names never watched when the reloader walks a directory or expands a glob
# (--reload-include, new .py files), nor walked into; --reload-exclude adds to them.
RELOAD_IGNORE = (
    ".*",                       # hidden: .git .hg .svn .venv .tox .nox .mypy_cache
                                # .pytest_cache .ruff_cache, vim's .x.swp, Emacs's .#x
    "*~", "#*#", "*.swp", "*.swx", "*.swo", "4913",     # editors' backups, swap, probe files
    "__pycache__", "*.py[cod]", "CVS", "_darcs", "node_modules",
    "*.log", "*.sqlite", "*.sqlite3", "*.db", "*-journal", "*-wal", "*-shm",
                                # what the app writes: logs, SQLite databases and journals
)
VIRTUALENV_MARKER = "pyvenv.cfg"    # a directory holding it is a virtualenv: not walked

# Live reload (on with the reloader; --no-livereload): the pages a browser
# opens get a script that reloads them when a new worker serves, and swaps
# changed stylesheets in.  Its two paths are answered before the app's.
LIVERELOAD_PREFIX = "/__runserver__/"
LIVERELOAD_SCRIPT = LIVERELOAD_PREFIX + "livereload.js"     # the page's script and its SharedWorker
LIVERELOAD_EVENTS = LIVERELOAD_PREFIX + "events"            # the event stream (server-sent events)
LIVERELOAD_RETRY = 50           # ms a page waits to reconnect (the backlog holds it meanwhile)
LIVERELOAD_FAILURES = 10        # failed reconnects in a row: the server is down, so a page
LIVERELOAD_SLOW_RETRY = 1000    # ... tries every this many ms instead
LIVERELOAD_KEEPALIVE = 15.0     # seconds between two comments on a quiet event stream
LIVERELOAD_STREAM_HEAD = (b"Content-Type: text/event-stream\r\nCache-Control: no-store\r\n"
                          b"Connection: close\r\n\r\n")     # it ends with the connection


# The error page (--debug): how much of a traceback it shows, and its largest size.
CONTEXT_LINES = 5               # source lines either side of a frame's line
MAX_FRAMES = 100                # frames of one exception, after folding a recursion
MAX_CHAIN = 30                  # chained exceptions ("During handling of the above...")
GROUP_WIDTH = 15                # members of an exception group, and nested groups,
GROUP_DEPTH = 10                # ... as Python's own traceback shows them
MAX_LOCALS = 200                # local variables of one frame
VALUE_LIMIT = 2000              # characters of one variable's text
NESTED_VALUE_LIMIT = 200        # ... and of one item inside it
LINE_LIMIT = 300                # characters of one source line
MESSAGE_LIMIT = 20000           # characters of an exception's message
PAGE_LIMIT = 1 << 20            # bytes of an error page, whatever the traceback
# The request values the page masks: those whose names match (a pattern, not
# compiled at import: re caches it when a page first needs it).
SECRET_NAMES = "(?i)API|TOKEN|KEY|SECRET|PASS|SIGNATURE|AUTH|SESSION|COOKIE"
MIN_SECRET_LENGTH = 6           # shorter masked values are not masked elsewhere too
# A query parameter named like SECRET_NAMES, in a URL or a query string: its
# value is masked wherever it appears, however short.
SECRET_PARAMETER = (r"((?:^|[?&;'\"\s])[^=&#;'\"\s]*(?:%s)[^=&#;'\"\s]*=)[^&#;'\"\s]*"
                    % SECRET_NAMES[4:])
MASK = "********"


class Limits:
    """Limits and timeouts of one server; each has the CLI option named beside it."""

    max_request_line = 65536    # --max-request-line: longer request line -> 414
    max_header_size = 65536     # --max-header-size: larger header block -> 431
    max_headers = 100           # --max-headers: more header lines -> 431
    max_body = 1 << 30          # --max-body: larger request body -> 413
    header_timeout = 10.0       # --header-timeout: to receive a whole request head
    keepalive_timeout = 5.0     # --keepalive-timeout: idle time between requests
    body_timeout = 30.0         # --body-timeout: silence allowed inside a request body, and
                                # in a response: time without a byte taken by the client
    shutdown_timeout = 5.0      # --shutdown-timeout: in-flight grace on exit/reload

    def __init__(self, **overrides):
        for name, value in overrides.items():
            if not hasattr(Limits, name):
                raise TypeError("unknown limit %r" % name)
            if value is not None:
                setattr(self, name, value)


DEFAULT_LIMITS = Limits()


# ---- HTTP grammar and parsing ---------------------------------------------
# Named after the ABNF of RFC 9110 and RFC 9112; everything validates here.

TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
# A field value starts with a visible character, so that it cannot also match
# the whitespace before it: an ambiguous pattern backtracks quadratically.
FIELD_VALUE = rb"(?:[^\x00-\x20\x7f][^\x00-\x08\x0a-\x1f\x7f]*)?"  # VCHAR, obs-text, SP, HTAB
QUOTED_STRING = rb'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*"'
REQUEST_LINE = re.compile(rb"(%s) ([^\x00-\x20\x7f]+) HTTP/([0-9])\.([0-9])" % TOKEN)
FIELD_LINE = re.compile(rb"(%s):[ \t]*(%s)" % (TOKEN, FIELD_VALUE))
FIELD_NAME = re.compile(TOKEN)
# The bytes of a header line: tab, visible ASCII, space and obs-text (FIELD_VALUE's).
FIELD_VALUE_BYTES = b"\t" + bytes(range(0x20, 0x7f)) + bytes(range(0x80, 0x100))
CONTENT_LENGTH = re.compile(rb"[0-9]{1,18}")
CHUNK_HEADER = re.compile(
    rb"([0-9A-Fa-f]{1,16})((?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*)[ \t]*"
    % (TOKEN, TOKEN, QUOTED_STRING))
HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[-A-Za-z0-9._~!$&'()*+,;=%]*)(?::[0-9]*)?")
ABSOLUTE_FORM = re.compile(rb"https?://([^/?#]*)((?:[/?][^#]*)?)", re.IGNORECASE)
EMPTY_LINES = re.compile(rb"(?:\r\n)+")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
STR_TOKEN = re.compile(TOKEN.decode())
# Tab, visible ASCII, space and latin-1's upper half: no control character, nothing
# beyond latin-1 (a class listed this way, not negated, compiles in microseconds).
STR_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
STATUS = re.compile(r"([2-9][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*")
# The status line an app writes itself on a connection it takes over (a WebSocket's 101).
TAKEN_OVER_STATUS = re.compile(rb"HTTP/1\.[01] ([1-9][0-9][0-9])[ \r]")

# RFC 7239: the Forwarded header (section 4) and the node of its for= (section 6),
# the form X-Forwarded-For's entries take too (there an IPv6 address may also go
# bare, and nginx writes "unix:" for a unix-socket peer).  Only --proxy-headers
# needs them: compiled when first used (re caches them), not at every worker's
# start.  Whitespace after a comma is matched only before an element, so that
# no input matches two ways (which would backtrack exponentially).
FORWARDED_VALUE = r"(?:%s|%s)" % (TOKEN.decode(), QUOTED_STRING.decode())
FORWARDED_PAIR = r"%s=%s" % (TOKEN.decode(), FORWARDED_VALUE)
FORWARDED_ELEMENT = r"(?:%s)?(?:;(?:%s)?)*" % (FORWARDED_PAIR, FORWARDED_PAIR)
FORWARDED_NONEMPTY_ELEMENT = r"(?:%s(?:;(?:%s)?)*|(?:;(?:%s)?)+)" % ((FORWARDED_PAIR,) * 3)
FORWARDED = r"%s(?:[ \t]*,(?:[ \t]*%s)?)*" % (FORWARDED_ELEMENT, FORWARDED_NONEMPTY_ELEMENT)
FORWARDED_PARTS = r"(%s)=(%s)|," % (TOKEN.decode(), FORWARDED_VALUE)   # a pair, or a comma
OBFUSCATED_ID = r"_[A-Za-z0-9._-]+"
NODE = (r"(?:([0-9]{1,3}(?:\.[0-9]{1,3}){3})|\[([0-9A-Fa-f:.]+)\]|((?i:unknown))|(%s))"
        r"(?::([0-9]{1,5}|%s))?" % (OBFUSCATED_ID, OBFUSCATED_ID))
BARE_IPV6 = r"[0-9A-Fa-f]*:[0-9A-Fa-f:.]*"
UNIX_NODE = r"unix:[^\x00-\x20,]*"
LIST_SEPARATOR = r"[ \t]*,[ \t]*"
SCHEME_PORTS = {"http": "80", "https": "443"}
PROXY_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}

# A timed-out socket operation: Python's timeout, or the kernel's SO_RCVTIMEO
# and SO_SNDTIMEO on a blocking socket (which raise EAGAIN).
TIMEOUT_ERRORS = (socket.timeout, BlockingIOError)
TLS_TO_HTTP = ("TLS handshake received: this server speaks HTTP, not HTTPS "
               "(use http:// or start it with --cert/--key)")
TLS_HANDSHAKE = b"\x16"         # the first byte a TLS client sends (its ClientHello's record)
HTTP_TO_TLS = "plain HTTP sent to an HTTPS port: use %s"

HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade"))


class BadRequest(Exception):
    """A request the server refuses: the HTTP status to answer and why."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RequestHead:
    """A parsed and validated request head; `environ` holds its CGI variables."""

    __slots__ = ("method", "target", "version", "environ", "content_length",
                 "chunked", "keep_alive", "expect_continue", "host")


def field_name_info(name):
    """(lower-case name, environ key) for a header name; the key is None for
    names with '_', so that X_Auth cannot pass for X-Auth."""
    lower = name.lower()
    if b"_" in name:
        return lower, None
    key = lower.decode("latin-1").upper().replace("-", "_")
    return lower, key if lower in (b"content-type", b"content-length") else "HTTP_" + key


# What was checked once is not checked again.  Each cache holds at most
# CACHE_ENTRIES entries, and only short ones (CACHE_ENTRY_LENGTH bytes or
# characters): about 1 MB each at most, whatever clients and apps send.
CACHE_ENTRIES = 1000
CACHE_ENTRY_LENGTH = 256
FIELD_NAMES = {}                # valid header names as sent -> field_name_info()
RESPONSE_FIELDS = {}            # (name, value) response headers already checked ->
                                # (b"Name: value\r\n", the length if Content-Length)
STATUS_LINES = {}               # statuses already checked -> (code, b"HTTP/1.1 status\r\n")
HOSTS_CHECKED = set()           # Host values a server allowed, so valid ones (host_allowed())
FRAMING_FIELDS = frozenset((b"content-length", b"transfer-encoding", b"host", b"expect",
                            b"connection"))


def parse_request_head(data, limits=DEFAULT_LIMITS):
    """Parse a request head (without its final blank line) into a RequestHead.

    Raises BadRequest with the status to answer for anything RFC 9112 forbids.
    """
    end = data.find(b"\r\n")
    if end < 0:
        end = len(data)
    if end > limits.max_request_line:
        raise BadRequest(414, "request line longer than %d bytes" % limits.max_request_line)
    match = REQUEST_LINE.fullmatch(data, 0, end)
    if match is None:
        raise BadRequest(400, describe_bad_request_line(data[:end]))
    method, target, major, minor = match.groups()
    if major != b"1" or minor not in b"01":
        raise BadRequest(505, "HTTP version %s.%s is not supported"
                         % (major.decode(), minor.decode()))
    if len(data) - end > limits.max_header_size:
        raise BadRequest(431, "header section larger than %d bytes (--max-header-size)"
                         % limits.max_header_size)
    # The header lines.  Rather than a regular expression over the section
    # (some microseconds per line), its bytes are checked at once: a field
    # line is a token, a colon and a value of FIELD_VALUE_BYTES, so deleting
    # those bytes must leave exactly the line endings.  Then only the names
    # are left to check.
    block = data[end + 2:]
    lines = block.split(b"\r\n") if end < len(data) else ()
    if lines and block.translate(None, FIELD_VALUE_BYTES) != b"\r\n" * (len(lines) - 1):
        raise BadRequest(400, describe_bad_field_lines(lines))
    if len(lines) > limits.max_headers:
        raise BadRequest(431, "more than %d header lines" % limits.max_headers)

    head = RequestHead()
    head.method = method.decode("ascii")
    head.version = "HTTP/1.1" if minor == b"1" else "HTTP/1.0"
    environ = head.environ = {}
    lengths = []
    encodings = []
    hosts = []
    expect = connection = None
    for line in lines:
        name, colon, value = line.partition(b":")
        known = FIELD_NAMES.get(name) if colon else None
        if known is None:           # FIELD_NAMES holds valid names only
            if not colon or FIELD_NAME.fullmatch(name) is None:
                raise BadRequest(400, describe_bad_field_lines(lines))
            known = field_name_info(name)
            if len(FIELD_NAMES) < CACHE_ENTRIES and len(name) <= CACHE_ENTRY_LENGTH:
                FIELD_NAMES[name] = known
        name, key = known
        value = value.strip(b" \t")
        if name in FRAMING_FIELDS:
            if name == b"host":
                hosts.append(value)
            elif name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                encodings.append(value)
            elif name == b"expect":
                expect = value if expect is None else expect + b"," + value
            else:
                connection = value if connection is None else connection + b"," + value
        if key is None:
            continue
        if key in environ:
            environ[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value.decode("latin-1")
        else:
            environ[key] = value.decode("latin-1")

    check_target_and_host(head, method, target, hosts)
    if lengths or encodings:
        check_framing(head, lengths, encodings, limits)
    else:
        head.chunked = False
        head.content_length = 0

    head.expect_continue = False
    if expect is not None:
        if expect.lower() != b"100-continue":
            raise BadRequest(417, "Expect other than 100-continue")
        head.expect_continue = minor == b"1"

    tokens = [token.strip(b" \t") for token in connection.lower().split(b",")] \
        if connection is not None else ()
    head.keep_alive = b"close" not in tokens if minor == b"1" else b"keep-alive" in tokens
    return head


def check_response_field(item):
    """Check one (name, value) response header from an app.  Returns the line
    to send and, for Content-Length, the length (else None)."""
    if type(item) is not tuple or len(item) != 2:
        raise AssertionError("header %r is not a (name, value) tuple" % (item,))
    name, value = item
    if type(name) is not str or not STR_TOKEN.fullmatch(name):
        raise AssertionError("invalid header name %r" % (name,))
    lower = name.lower()
    if lower in HOP_BY_HOP:
        raise AssertionError("hop-by-hop header %r is the server's to set" % name)
    if type(value) is not str or not STR_FIELD_VALUE.fullmatch(value):
        raise AssertionError("invalid value for header %s: %r (CR, LF, a control "
                             "character or one outside latin-1, or not a str)" % (name, value))
    length = None
    if lower == "content-length":
        if not value.isdigit() or not value.isascii():
            raise AssertionError("invalid Content-Length %r" % value)
        length = int(value)
    return ("%s: %s\r\n" % item).encode("latin-1"), length


def check_target_and_host(head, method, target, hosts):
    """Set head.target and head.host from the request target and Host lines."""
    if target[:1] != b"/":
        if target == b"*":
            if method != b"OPTIONS":
                raise BadRequest(400, "the target * is only allowed with OPTIONS")
        else:
            absolute = ABSOLUTE_FORM.fullmatch(target)
            if absolute is None:
                raise BadRequest(400, "request target must start with '/' or be an absolute URL")
            authority, target = absolute.groups()
            hosts = [authority]      # RFC 9112 3.2.2: the target's authority wins
            head.environ["HTTP_HOST"] = authority.decode("latin-1")
            target = target or b"/"
    head.target = target
    if len(hosts) == 1:
        host = head.host = hosts[0]
        if host not in HOSTS_CHECKED and HOST.fullmatch(host) is None:
            raise BadRequest(400, "invalid Host header")
    elif hosts:
        raise BadRequest(400, "more than one Host header")
    elif head.version == "HTTP/1.1":
        raise BadRequest(400, "HTTP/1.1 request without a Host header")
    else:
        head.host = None


def check_framing(head, lengths, encodings, limits):
    """Set head.chunked and head.content_length from the body's framing lines,
    refusing every ambiguous combination (the request-smuggling ones)."""
    head.chunked = False
    head.content_length = 0
    if encodings:
        if len(encodings) > 1 or encodings[0].lower() != b"chunked":
            raise BadRequest(501, "Transfer-Encoding other than exactly 'chunked'")
        if head.version == "HTTP/1.0":
            raise BadRequest(400, "Transfer-Encoding: chunked in an HTTP/1.0 request")
        if lengths:
            raise BadRequest(400, "both Content-Length and Transfer-Encoding")
        head.chunked = True
        head.environ.pop("HTTP_TRANSFER_ENCODING", None)
    elif lengths:
        if len(lengths) > 1:
            raise BadRequest(400, "more than one Content-Length")
        if CONTENT_LENGTH.fullmatch(lengths[0]) is None:
            raise BadRequest(400, "Content-Length is not a plain decimal number")
        head.content_length = int(lengths[0])
        if head.content_length > limits.max_body:
            raise BadRequest(413, "body of %d bytes is over the limit of %d (--max-body)"
                             % (head.content_length, limits.max_body))


def describe_bad_request_line(line):
    """Say what is wrong with a request line that does not match the grammar."""
    if b"\n" in line or b"\r" in line:
        return "bare CR or LF as a line ending"
    if re.search(rb"[\x00-\x1f\x7f]", line):
        return "control character in the request line"
    parts = line.split(b" ")
    if len(parts) != 3:
        return "request line is not 'METHOD target HTTP/x.y'"
    if not re.fullmatch(TOKEN, parts[0]):
        return "method is not a token"
    return "malformed request line"


def describe_bad_field_lines(lines):
    """Say what is wrong with the first bad line of a header section."""
    for line in lines:
        if FIELD_LINE.fullmatch(line) is None:
            return describe_bad_field_line(line)
    return "malformed header section"


def describe_bad_field_line(line):
    """Say what is wrong with a header line that does not match the grammar."""
    if line[:1] in (b" ", b"\t"):
        return "obsolete line folding in a header"
    if b"\n" in line or b"\r" in line:
        return "bare CR or LF as a line ending"
    name, colon, _ = line.partition(b":")
    if not colon:
        return "header line without a colon"
    if not re.fullmatch(TOKEN, name):
        if name.rstrip(b" \t") != name:
            return "whitespace before the colon in a header"
        return "header name is not a token"
    return "control character in a header value"


def parse_chunk_header(line):
    """Return the size of a chunk from its header line (without CRLF)."""
    match = CHUNK_HEADER.fullmatch(line)
    if match is None:
        raise BadRequest(400, "invalid chunk header")
    return int(match.group(1), 16)


def parse_forwarded(value):
    """The elements of a Forwarded header (RFC 7239), leftmost first, each a
    dict of its parameters: names in lower case, values unquoted."""
    if re.fullmatch(FORWARDED, value) is None:
        hint = ' (an IPv6 address goes quoted, in brackets: for="[2001:db8::1]")' \
            if re.search(r"(?i)for=[0-9a-f]*:", value) else ""
        raise BadRequest(400, 'malformed Forwarded header "%s"%s'
                         % (escape_control(value[:100]), hint))
    elements = [{}]
    for match in re.finditer(FORWARDED_PARTS, value):
        name, text = match.groups()
        if name is None:
            elements.append({})
            continue
        name = name.lower()
        if name in elements[-1]:
            raise BadRequest(400, "%s= twice in one element of a Forwarded header" % name)
        if text[:1] == '"':
            text = re.sub(r"\\(.)", lambda escape: escape.group(1), text[1:-1], flags=re.S)
        elements[-1][name] = text
    return [element for element in elements if element]


def parse_node(text, header):
    """A client or proxy named in a forwarding header (RFC 7239's node) as
    REMOTE_ADDR and REMOTE_PORT would hold it: (address, port or None).  The
    address may be "unknown" or an identifier like _proxy1 that hides one."""
    match = re.fullmatch(NODE, text)
    ipv4 = ipv6 = port = None
    if match is not None:
        ipv4, ipv6, unknown, hidden, port = match.groups()
        address = ipv4 or ipv6 or unknown or hidden
        if port is not None and port.isdigit() and int(port) > 65535:
            address = None
    elif header == "X-Forwarded-For" and re.fullmatch(UNIX_NODE, text):
        return text, None
    elif header == "X-Forwarded-For" and re.fullmatch(BARE_IPV6, text):
        address = ipv6 = text
    else:
        address = None
    if ipv4 or ipv6:
        import ipaddress
        try:
            if ipaddress.ip_address(address).version != (4 if ipv4 else 6):
                address = None
        except ValueError:
            address = None
    if address is None:
        raise BadRequest(400, '%s: "%s" is not an IP address (nor "unknown" or an identifier '
                              'like _proxy1), with a port if any'
                         % (header, escape_control(text[:100])))
    return address, port


def forwarded_scheme(value, header):
    """wsgi.url_scheme for a forwarded protocol: http or https (ws and wss are those)."""
    scheme = PROXY_SCHEMES.get(value.lower())
    if scheme is None:
        raise BadRequest(400, '%s: "%s" is not http or https'
                         % (header, escape_control(value[:100])))
    return scheme


def forwarded_host(value, header):
    """A forwarded Host value, checked as a Host header is."""
    if value[:1] in ("", ":") or HOST.fullmatch(value.encode("latin-1")) is None:
        raise BadRequest(400, '%s: "%s" is not a host name or address, with a port if any'
                         % (header, escape_control(value[:100])))
    return value


def forwarded_port(value, header):
    """A forwarded port number, as SERVER_PORT holds it."""
    if not (value.isascii() and value.isdigit() and len(value) <= 5 and int(value) <= 65535):
        raise BadRequest(400, '%s: "%s" is not a port number'
                         % (header, escape_control(value[:100])))
    return value


def split_host(host):
    """A Host value as (name, port); the port is "" if none is given."""
    if host.startswith("["):
        end = host.find("]") + 1
        return host[:end], host[end + 1:]
    name, _, port = host.partition(":")
    return name, port


def escape_control(text):
    """Make control characters visible, for log lines built from client bytes."""
    if CONTROL_CHARS.search(text) is None:
        return text
    return CONTROL_CHARS.sub(lambda m: "\\x%02x" % ord(m.group()), text)


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
def http_date(timestamp=None):
    """An IMF-fixdate (RFC 9110 5.6.7), independent of the locale."""
    t = time.gmtime(timestamp)
    return "%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _WEEKDAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year,
        t.tm_hour, t.tm_min, t.tm_sec)


_head_lines_cache = [0, b""]


def date_and_server_lines():
    """The Date and Server lines of a response head, as bytes (made once a second)."""
    now = int(time.time())
    if now != _head_lines_cache[0]:
        _head_lines_cache[1] = ("Date: %s\r\nServer: %s\r\n"
                                % (http_date(now), SERVER_SOFTWARE)).encode("latin-1")
        _head_lines_cache[0] = now
    return _head_lines_cache[1]


# ---- Request body readers -------------------------------------------------

class ClientDisconnected(BadRequest):
    """The client went away (or went silent) in the middle of a request body."""


class ClientStalled(socket.timeout):
    """The client took none of the response for --body-timeout seconds."""


class ContentLengthInput:
    """wsgi.input for a body of known length: it never reads past the body.

    The first read sends `100 Continue` when the client asked for it.
    """

    __slots__ = ("handler", "remaining")

    def __init__(self, handler, length):
        self.handler = handler
        self.remaining = length

    def _take(self, size):
        """Return between 1 and `size` bytes of the body."""
        handler = self.handler
        if not handler.buffer:
            handler.receive_body_bytes(min(size, RECV_SIZE * 4))
        data = bytes(handler.buffer[:size])
        del handler.buffer[:len(data)]
        self.remaining -= len(data)
        return data

    def read(self, size=-1):
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        if size == 0:
            return b""
        data = self._take(size)
        if len(data) == size:
            return data
        parts = [data]
        size -= len(data)
        while size:
            data = self._take(size)
            parts.append(data)
            size -= len(data)
        return b"".join(parts)

    def readline(self, size=-1):
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        parts = []
        while size:
            handler = self.handler
            if not handler.buffer:
                handler.receive_body_bytes(size)
            end = handler.buffer.find(b"\n", 0, size)
            data = self._take(size if end < 0 else end + 1)
            parts.append(data)
            size -= len(data)
            if end >= 0:
                break
        return b"".join(parts)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line


def read_chunked_body(handler, max_body):
    """Decode a chunked body into a spooled file; return (file, decoded length)."""
    import tempfile
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_LIMIT)
    total = 0
    try:
        while True:
            size = parse_chunk_header(handler.read_line(4096, "chunk header"))
            if size == 0:
                break
            total += size
            if total > max_body:
                raise BadRequest(413, "chunked body over the limit of %d bytes (--max-body)"
                                 % max_body)
            while size:
                if not handler.buffer:
                    handler.receive_body_bytes(size)
                data = handler.buffer[:size]
                del handler.buffer[:len(data)]
                body.write(data)
                size -= len(data)
            while len(handler.buffer) < 2:
                handler.receive_body_bytes(2)
            if handler.buffer[:2] != b"\r\n":
                raise BadRequest(400, "chunk data not followed by CRLF")
            del handler.buffer[:2]
        for _ in range(handler.limits.max_headers + 1):       # trailer section
            line = handler.read_line(handler.limits.max_header_size, "trailer")
            if not line:
                break
            if FIELD_LINE.fullmatch(line) is None:
                raise BadRequest(400, "invalid trailer: " + describe_bad_field_line(line))
        else:
            raise BadRequest(431, "too many trailer lines")
    except BaseException:
        body.close()
        raise
    body.seek(0)
    return body, total


# ---- WSGI request handler -------------------------------------------------

# What a socket's send buffer still holds (not yet acknowledged by the peer):
# the progress of a response, and the bytes a client never got.  None where
# the system does not tell.  Chosen once, for this platform.
SO_NWRITE = 0x1024                              # macOS's <sys/socket.h>


def unsent_bytes_linux(sock):
    import fcntl
    import termios
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    except OSError:                             # SIOCOUTQ is TIOCOUTQ's number
        return None


def unsent_bytes_macos(sock):
    try:
        return sock.getsockopt(socket.SOL_SOCKET, SO_NWRITE)
    except OSError:
        return None


def unsent_bytes_unknown(sock):
    return None


unsent_bytes = (unsent_bytes_linux if sys.platform.startswith("linux")
                else unsent_bytes_macos if sys.platform == "darwin" else unsent_bytes_unknown)

# What an app may do with the connection's socket that takes the connection
# over, besides send() and sendall(): write on it another way, or end it.
SOCKET_TAKING_METHODS = frozenset(("sendmsg", "sendto", "sendfile", "makefile", "dup",
                                   "detach", "shutdown", "close"))


class TakeOverSocket:
    """The connection's socket as an app finds it in the environ (see
    socket_environ()): the socket itself to read, but the app's first write
    on it, or close(), takes the connection over (see take_over()).  Once
    the app uses it, the socket is blocking with no timeout."""

    __slots__ = ("handler",)

    def __init__(self, handler):
        self.handler = handler

    def __getattr__(self, name):
        handler = self.handler
        if name in SOCKET_TAKING_METHODS:
            handler.take_over()
        elif handler.timeout is not None:
            handler.set_timeout(None)
        return getattr(handler.connection, name)

    def send(self, data, flags=0):
        handler = self.handler
        handler.take_over(data)
        sent = handler.connection.send(data, flags)
        handler.bytes_sent += sent
        return sent

    def sendall(self, data, flags=0):
        handler = self.handler
        handler.take_over(data)
        handler.connection.sendall(data, flags)
        handler.bytes_sent += len(data)

    def __repr__(self):
        return "<TakeOverSocket of %r>" % (self.handler.connection,)


class WSGIRequestHandler(socketserver.BaseRequestHandler):
    """Serve the HTTP/1.1 requests of one connection to the server's WSGI app.

    Overridable hooks: handle_one_request(), get_environ(), log_request(),
    log_bad_request(), handle_app_error().
    """

    def __init__(self, request, client_address, server, serve=True):
        """socketserver's contract: set up, handle the connection, finish.  With
        serve=False the server's event loop drives it instead: serve_ready()
        whenever bytes arrive, expire() at its deadline, finish() at the end."""
        self.request = request
        self.client_address = client_address
        self.server = server
        self.setup()
        if serve:
            try:
                self.handle()
            finally:
                self.finish()

    def setup(self):
        server = self.server
        self.limits = server.limits
        self.buffer = bytearray()       # received, not yet parsed (deleting its front is cheap)
        self.idle = True
        self.requests = 0
        self.timeout = None             # what the socket's timeout is set to
        self.opened = time.monotonic()
        self.head_started = None        # event loop: when a partial head was first seen
        self.deadline = None            # event loop: when to give up waiting for bytes
        self.pending_head = None        # event loop: a complete head taken from the buffer
        self.ran_long = False           # event loop: its last request took PROMOTE_AFTER or more
        self.connection = self.request
        self.fileno = self.request.fileno()
        self.taken_over = False         # True once the app writes on the socket itself
                                        # (take_over()); the BadRequest if it was refused
        self.kernel_timeouts = server.ssl_context is None and hasattr(socket, "SO_RCVTIMEO") \
            and MSG_DONTWAIT != 0         # Windows: SO_RCVTIMEO takes milliseconds, not a timeval
        if server.address_family in (socket.AF_INET, socket.AF_INET6):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.base_environ = dict(server.base_environ)
        if isinstance(self.client_address, tuple):
            self.remote = "%s:%s" % self.client_address[:2]
            self.base_environ["REMOTE_ADDR"] = self.client_address[0]
            self.base_environ["REMOTE_PORT"] = str(self.client_address[1])
        else:                                       # unix socket: a local peer
            self.remote = "unix"
            self.base_environ["REMOTE_ADDR"] = "127.0.0.1"
            self.base_environ["REMOTE_PORT"] = "0"
        # The access log's client: the peer's address, or from a trusted proxy its client's.
        self.client = self.client_address[0] if isinstance(self.client_address, tuple) \
            else "unix"
        # --proxy-headers: whether this peer is a proxy whose forwarding headers count
        self.proxied = server.proxy_trust is not None and server.proxy_trust.trusts(
            self.client_address[0] if isinstance(self.client_address, tuple) else "unix:")
        self.base_environ.update(socket_environ(TakeOverSocket(self)))
        server.track_connection(self, True)

    def finish(self):
        if self.connection is not self.request:
            self.connection.close()     # the TLS socket; socketserver closes only the plain one
        self.base_environ = None        # its TakeOverSocket refers back to this handler
        self.server.track_connection(self, False)

    def handle(self):
        """Serve the connection's requests one after the other, blocking on its socket."""
        self.guarded(self.serve_blocking)

    def serve_blocking(self):
        if self.server.ssl_context is not None and not self.start_tls():
            return False
        while self.handle_one_request():
            pass
        return False

    def serve_ready(self):
        """Event loop: take the bytes that arrived and serve every complete
        request among them; True to wait for more, False to close."""
        try:                            # guarded(), without its calls: once per request
            return self.serve_buffered()
        except (BadRequest, OSError) as exc:
            return self.refuse(exc)

    def serve_buffered(self):
        try:
            data = self.connection.recv(RECV_SIZE, MSG_DONTWAIT)
        except BlockingIOError:
            return True
        if not data:
            if self.buffer:
                raise BadRequest(400, "client closed the connection in the middle of the head")
            return False
        if not self.buffer and self.requests == 0 and data[:1] == b"\x16":
            raise BadRequest(0, TLS_TO_HTTP)
        self.buffer += data
        while True:
            self.request_line = b""
            self.idle = not self.buffer
            self.pending_head = self.take_head()
            if self.pending_head is None:
                return True
            self.head_started = None
            if not self.handle_one_request():
                return False
            if not self.buffer:
                return True

    def wait_deadline(self):
        """Event loop: when to give up on the next bytes (see expire())."""
        if self.buffer:                 # a partial head: timed from when it was first seen
            if self.head_started is None:
                self.head_started = time.monotonic()
            return self.head_started + self.limits.header_timeout
        if self.requests == 0:
            return self.opened + self.limits.header_timeout
        return time.monotonic() + self.limits.keepalive_timeout

    def expire(self):
        """Event loop: the deadline passed with no complete request head."""
        if self.buffer:
            self.request_line = b""
            self.guarded(self.raise_head_timeout)
        else:
            self.log_idle_timeout(self.requests == 0)

    def raise_head_timeout(self):
        raise BadRequest(408, "request head not received within %gs (--header-timeout)"
                         % self.limits.header_timeout)

    def log_idle_timeout(self, first):
        logger.debug("%s closed: no request within %gs (%s)", self.remote,
                     self.limits.header_timeout if first else self.limits.keepalive_timeout,
                     "--header-timeout" if first else "--keepalive-timeout")

    def guarded(self, serve):
        """Run serve(); answer and log a refused request; False if the connection must close."""
        try:
            return serve()
        except (BadRequest, OSError) as exc:
            return self.refuse(exc)

    def refuse(self, exc):
        """After a BadRequest or a socket error: answer and log; False (close)."""
        if isinstance(exc, BadRequest):
            self.log_bad_request(exc)
            # A peer that only half-closed still reads why; a started response
            # cannot be followed by another.
            if exc.status and not (isinstance(exc, ClientDisconnected) and self.headers_sent):
                self.send_error(exc.status, exc.reason)
        elif not isinstance(exc, (ConnectionError, *TIMEOUT_ERRORS)):   # else the peer left
            logger.warning("%s connection failed: %s", self.remote,     # a bad TLS record, say
                           escape_control(str(exc)))
        return False

    def start_tls(self):
        """TLS handshake in this connection's thread; False if it failed.  A
        plain HTTP request instead is answered 400, with the https:// URL to use."""
        self.set_timeout(self.limits.header_timeout)
        try:                    # the first byte tells, left in the socket for what follows
            first = self.connection.recv(1, socket.MSG_PEEK)
        except TIMEOUT_ERRORS:
            self.log_idle_timeout(True)
            return False
        except OSError:
            return False
        if first != TLS_HANDSHAKE:
            if first:                           # else closed, or shut by a stop
                self.refuse_plain_http()
            return False
        try:
            # Handshake once self.connection is the TLS socket, so that
            # close_idle_and_wait() can interrupt a client that sends nothing.
            self.connection = self.server.ssl_context.wrap_socket(
                self.connection, server_side=True, do_handshake_on_connect=False)
            self.connection.do_handshake()
        except (OSError, ValueError) as exc:
            if not self.server.stopping:
                logger.warning("%s TLS handshake failed: %s", self.remote,
                               escape_control(str(exc)))
            return False
        return True

    def refuse_plain_http(self):
        """A plain HTTP request on the TLS port: read its head, then refuse it
        with the https:// URL it should have used (nginx answers it so too)."""
        head = self.read_head(True)
        if head is None:
            return
        self.request_line = head.partition(b"\r\n")[0]
        try:
            request = parse_request_head(head, self.limits)
        except BadRequest:
            request = None
        if request is not None and request.host and self.server.host_allowed(request.host):
            url = "https://%s%s" % (request.host.decode("latin-1"),
                                    request.target.decode("latin-1")
                                    if request.target[:1] == b"/" else "/")
        else:
            url = "https://%s/" % server_authority(self.server)
        raise BadRequest(400, HTTP_TO_TLS % url)

    # -- reading ----------------------------------------------------------

    def set_timeout(self, timeout):
        """Set the socket's timeout (None: blocking, none), with no system
        call when it is unchanged.

        Without TLS the socket stays blocking and the kernel keeps the time
        (SO_RCVTIMEO, SO_SNDTIMEO): a recv() is then one system call and one
        release of the GIL instead of poll() and recv(), which is worth 40 %
        more keep-alive requests per second with ten clients.
        """
        if timeout == self.timeout:
            return
        if self.kernel_timeouts:
            # A zero timeval means "never": None's, and nothing else's.
            wait = 0 if timeout is None else max(timeout, 0.001)
            timeval = struct.pack("@ll", int(wait), int(wait % 1 * 1e6))
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        else:
            self.connection.settimeout(timeout)
        self.timeout = timeout

    def receive(self, timeout):
        """Append what the socket has to the buffer; False at end of stream."""
        self.set_timeout(timeout)
        data = self.connection.recv(RECV_SIZE)
        if not data:
            return False
        self.buffer += data
        return True

    def send_continue(self):
        """Send `100 Continue` once, if the client asked for it and no response started."""
        if self.expect_continue:
            self.expect_continue = False
            if not self.headers_sent:        # else the final response already went out
                self.connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def receive_body_bytes(self, wanted):
        """Fill the empty buffer with body bytes; a silent or closed peer raises."""
        self.send_continue()
        self.set_timeout(self.limits.body_timeout)
        try:        # never a size the client chose: recv() allocates all of it
            data = self.connection.recv(max(RECV_SIZE, min(wanted, 4 * RECV_SIZE)))
        except TIMEOUT_ERRORS:
            raise ClientDisconnected(408, "body timeout: no data for %gs (--body-timeout)"
                                     % self.limits.body_timeout) from None
        except OSError as exc:                   # a reset, or a bad TLS record
            raise ClientDisconnected(400, "connection failed in the middle of the body: %s"
                                     % exc) from None
        if not data:
            raise ClientDisconnected(400, "client closed the connection in the middle of the body")
        self.buffer += data

    def read_line(self, limit, what):
        """Read one CRLF-terminated line of a chunked body, without its CRLF."""
        while True:
            end = self.buffer.find(b"\n", 0, limit + 2)
            if end >= 0:
                line = self.buffer[:end - 1]
                if end == 0 or self.buffer[end - 1:end] != b"\r" or b"\r" in line:
                    raise BadRequest(400, "bare CR or LF in a %s" % what)
                del self.buffer[:end + 1]
                return line
            if len(self.buffer) >= limit + 2:
                raise BadRequest(400, "%s longer than %d bytes" % (what, limit))
            self.receive_body_bytes(RECV_SIZE)

    def read_head(self, first):
        """Return the next request head without its blank line; None when the
        client closed the connection or stayed idle between requests."""
        limits = self.limits
        if not self.buffer:
            timeout = limits.header_timeout if first else limits.keepalive_timeout
            try:
                if not self.receive(timeout):
                    return None
            except TIMEOUT_ERRORS:
                self.log_idle_timeout(first)
                return None
            except ConnectionError:
                return None
            if first and self.buffer[:1] == b"\x16" and self.server.ssl_context is None:
                raise BadRequest(0, TLS_TO_HTTP)
        self.idle = False
        deadline = time.monotonic() + limits.header_timeout
        while True:
            head = self.take_head()
            if head is not None:
                return head
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0 or not self.receive(remaining):
                    if not self.buffer:
                        return None
                    raise BadRequest(400, "client closed the connection in the middle of the head")
            except TIMEOUT_ERRORS:
                raise BadRequest(408, "request head not received within %gs (--header-timeout)"
                                 % limits.header_timeout) from None

    def take_head(self):
        """The next complete request head in the buffer, without its blank
        line; None if it has not all arrived.  Refuses an oversized one."""
        limits = self.limits
        buffer = self.buffer
        if buffer.startswith(b"\r\n"):              # RFC 9112 2.2: skip empty lines
            del buffer[:EMPTY_LINES.match(buffer).end()]
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buffer[:end])
            del buffer[:end + 4]
            return head
        if b"\n\n" in buffer:
            raise BadRequest(400, "bare LF as a line ending")
        if buffer.find(b"\n", 0, limits.max_request_line + 2) < 0 \
                and len(buffer) > limits.max_request_line + 1:
            raise BadRequest(414, "request line longer than %d bytes" % limits.max_request_line)
        if len(buffer) > limits.max_request_line + limits.max_header_size:
            raise BadRequest(431, "request head larger than %d bytes (--max-header-size)"
                             % limits.max_header_size)
        return None

    # -- one request --------------------------------------------------------

    def handle_one_request(self):
        """Read, run and answer one request; return whether to keep the connection."""
        self.requests += 1
        self.request_line = b""
        head = self.pending_head
        if head is not None:                # the event loop found it in the buffer
            self.pending_head = None
        else:
            head = self.read_head(self.requests == 1)
            if head is None:
                return False
        self.started = time.perf_counter()
        end = head.find(b"\r\n")
        self.request_line = head if end < 0 else head[:end]
        request = parse_request_head(head, self.limits)
        server = self.server
        host = request.host
        if self.proxied:
            forwarded = forwarded_environ(request.environ, self.base_environ, server.proxy_trust)
            if "HTTP_HOST" in forwarded:
                host = forwarded["HTTP_HOST"].encode("latin-1")
        if host is not None and not server.host_allowed(host):
            raise BadRequest(400, "Host %r%s is not allowed; start the server with "
                                  "--allowed-hosts %s to allow it"
                             % (host.decode("latin-1"),
                                " (forwarded by the proxy)" if host is not request.host else "",
                                split_host(host.decode("latin-1"))[0]))
        environ = self.get_environ(request)
        if self.proxied:
            environ.update(forwarded)
            self.client = environ["REMOTE_ADDR"]
        self.method = request.method
        self.http_version = request.version
        self.keep_alive = request.keep_alive and server.multithread and not server.stopping
        self.status = None
        self.headers_sent = False
        self.bytes_sent = 0
        self.expect_continue = request.expect_continue
        app = server.app
        if server.livereload is not None:
            if environ["PATH_INFO"].startswith(LIVERELOAD_PREFIX):
                return self.serve_live_reload(request, environ)
            if is_page_request(environ):
                app = ScriptInjector(app, server.livereload.tag)

        if request.chunked:
            self.send_continue()            # the body is read before the app runs
            body, length = read_chunked_body(self, self.limits.max_body)
            environ["wsgi.input"] = body
            environ["CONTENT_LENGTH"] = str(length)
            self.body = None
        else:
            body = self.body = ContentLengthInput(self, request.content_length)
            environ["wsgi.input"] = body

        try:
            ok = self.run_app(app, environ)
        finally:
            if request.chunked:
                body.close()
        self.idle = True
        if not ok:
            return False
        if self.body is not None and self.body.remaining:
            self.discard_body()
        return self.keep_alive

    def get_environ(self, request):
        """Build the PEP 3333 environ for a parsed request head."""
        environ = self.base_environ.copy()
        environ.update(request.environ)
        environ["REQUEST_METHOD"] = request.method
        environ["SERVER_PROTOCOL"] = request.version
        target = request.target
        path, _, query = target.partition(b"?")
        if b"%" in path:
            import urllib.parse
            path = urllib.parse.unquote_to_bytes(path)
        environ["PATH_INFO"] = path.decode("latin-1")
        environ["QUERY_STRING"] = query.decode("latin-1")
        environ["REQUEST_URI"] = target.decode("latin-1")
        return environ

    def discard_body(self):
        """Read and drop what the app left of the body, or give up the connection."""
        body = self.body
        if self.expect_continue or body.remaining > DRAIN_LIMIT:
            self.keep_alive = False          # the client may never send it: close
            return
        try:
            while body.remaining:
                body.read(min(body.remaining, RECV_SIZE))
        except (BadRequest, OSError):
            self.keep_alive = False

    # -- running the app and writing the response ---------------------------

    def start_response(self, status, headers, exc_info=None):
        """The PEP 3333 start_response callable; checks what the app gives."""
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        known = STATUS_LINES.get(status) if type(status) is str else None
        if known is None:
            if type(status) is not str or STATUS.fullmatch(status) is None:
                raise AssertionError("invalid status %r: expected a str like '200 OK' "
                                     "(latin-1, and not 1xx)" % (status,))
            known = int(status[:3]), ("HTTP/1.1 %s\r\n" % status).encode("latin-1")
            if len(STATUS_LINES) < CACHE_ENTRIES and len(status) <= CACHE_ENTRY_LENGTH:
                STATUS_LINES[status] = known
        if type(headers) is not list:
            raise AssertionError("headers must be a list of (name, value) tuples, not %s"
                                 % type(headers).__name__)
        length = None
        lines = []
        for item in headers:
            try:        # a tuple subclass equal to a cached item is not one (refused below)
                field = RESPONSE_FIELDS.get(item) if type(item) is tuple else None
            except TypeError:                   # unhashable: not a header, refused below
                field = None
            if field is None:
                field = check_response_field(item)
                if len(RESPONSE_FIELDS) < CACHE_ENTRIES and len(field[0]) <= CACHE_ENTRY_LENGTH:
                    RESPONSE_FIELDS[item] = field
            line, content_length = field
            if content_length is not None:
                if length is not None:
                    raise AssertionError("invalid Content-Length %r" % item[1])
                length = content_length
            lines.append(line)
        self.status = status
        self.status_code, self.status_line = known
        self.header_lines = b"".join(lines)    # sent as checked, whatever the app does to the list
        self.content_length = length
        return self.write

    def send_head(self, length):
        """Choose the framing and return the response head as bytes; `length`
        is the body's size when the server knows it and the app did not say."""
        code = self.status_code
        bodiless_status = code < 200 or code in (204, 304)
        no_body = self.no_body = bodiless_status or self.method == "HEAD"
        self.chunked = False
        self.remaining = self.content_length
        lines = [self.status_line, date_and_server_lines(), self.header_lines]
        if self.content_length is None and not bodiless_status:
            if length is not None:
                lines.append(b"Content-Length: %d\r\n" % length)
                self.remaining = length
            elif no_body:
                pass                            # HEAD: the length is unknown
            elif self.http_version == "HTTP/1.1":
                lines.append(b"Transfer-Encoding: chunked\r\n")
                self.chunked = True
            else:
                self.keep_alive = False
        if no_body:
            self.remaining = 0
        body = self.body
        if self.keep_alive and (self.server.stopping        # stopped while this one ran
                                or body is not None and body.remaining   # not to be drained
                                and (self.expect_continue or body.remaining > DRAIN_LIMIT)):
            self.keep_alive = False
        if not self.keep_alive:
            lines.append(b"Connection: close\r\n\r\n")
        elif self.http_version == "HTTP/1.0":
            lines.append(b"Connection: keep-alive\r\n\r\n")
        else:
            lines.append(b"\r\n")
        self.headers_sent = True
        return b"".join(lines)

    def write(self, data):
        """Send body bytes (the PEP 3333 write callable, and the iterator's sink)."""
        if type(data) is not bytes:
            raise AssertionError("the app gave %s, not bytes, as body data"
                                 % type(data).__name__)
        if self.status is None:
            raise AssertionError("body data before start_response()")
        if self.taken_over:
            raise AssertionError("body data after the app took the connection over")
        head = b"" if self.headers_sent else self.send_head(None)
        if self.no_body:
            if head:
                self.transmit(head, len(head))
            return
        if self.chunked:
            if data:
                framed = b"%s%x\r\n%s\r\n" % (head, len(data), data)
                self.transmit(framed, len(framed) - len(data) - 2, 2)
            elif head:
                self.transmit(head, len(head))
            return
        if self.remaining is not None:
            if len(data) > self.remaining:
                data = data[:self.remaining]
                self.keep_alive = False
                self.response_error = "the app sent more bytes than its Content-Length"
            self.remaining -= len(data)
        self.transmit(head + data if head else data, len(head))

    def transmit(self, data, head=0, tail=0):
        """Send `data` whole and count its body bytes in bytes_sent: all but
        the first `head` and last `tail` bytes (response head, chunk framing)."""
        sent = 0
        if self.kernel_timeouts:        # the common case: the send buffer takes it all
            try:
                sent = self.connection.send(data, MSG_DONTWAIT)
            except BlockingIOError:
                pass
            if sent == len(data):
                self.bytes_sent += sent - head - tail
                return
        self.send_slowly(data, sent, head, tail)

    def send_slowly(self, data, sent, head, tail):
        """Send the rest of `data` to a client that reads slower than the
        server writes, counting what went out even if it fails: the
        --body-timeout counts from the last progress (await_progress())."""
        connection, view = self.connection, memoryview(data)
        piece = TLS_RECORD_SIZE if self.server.ssl_context is not None else len(data)
        since, queued = time.monotonic(), unsent_bytes(connection)
        self.set_timeout(min(self.limits.body_timeout, SEND_CHECK_INTERVAL))
        try:
            while sent < len(data):
                try:
                    sent += connection.send(view[sent:sent + piece])
                    since, queued = time.monotonic(), unsent_bytes(connection)
                except TIMEOUT_ERRORS:
                    since, queued = self.await_progress(since, queued)
        finally:
            self.bytes_sent += min(max(sent - head, 0), len(data) - head - tail)

    def await_progress(self, since, queued):
        """A send timed out.  Return when the client last took bytes, and
        how many wait in the send buffer (None if unknown), and set the next
        wait; raise ClientStalled after --body-timeout without progress."""
        now = time.monotonic()
        waiting = unsent_bytes(self.connection)
        if waiting is not None and queued is not None and waiting < queued:
            since = now                 # bytes left the send buffer: the client reads
        left = since + self.limits.body_timeout - now
        if left <= 0:
            # Reset rather than close: what the kernel still holds must not reach
            # the client after the log line has counted it out.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            raise ClientStalled("client read nothing for %gs: --body-timeout"
                                % self.limits.body_timeout)
        self.set_timeout(min(left, SEND_CHECK_INTERVAL))
        return since, waiting

    def run_app(self, app, environ):
        """Run the app and send its response; False if the connection must close."""
        self.response_error = None
        result = None
        try:
            result = app(environ, self.start_response)
            if self.taken_over:
                return self.end_take_over(result)
            data = result[0] if type(result) is list and len(result) == 1 else None
            if type(data) is bytes and self.status is not None and not self.headers_sent \
                    and (self.content_length is None or self.content_length == len(data)):
                # The common case: one send, head and body.
                head = self.send_head(len(data))
                self.transmit(head if self.no_body else head + data, len(head))
            elif isinstance(result, FileWrapper) and self.send_file(result):
                pass
            else:
                for data in result:
                    if data or type(data) is not bytes or self.status is None:
                        self.write(data)
                    if self.response_error:
                        break
                if self.taken_over:
                    return self.end_take_over(result)
                if not self.headers_sent:
                    if self.status is None:
                        raise AssertionError("the app returned without calling start_response()")
                    head = self.send_head(0)
                    self.transmit(head, len(head))
                elif self.chunked:
                    self.transmit(b"0\r\n\r\n", 5)
                elif self.remaining:
                    self.response_error = ("the app sent %d bytes less than its Content-Length"
                                           % self.remaining)
        except (ConnectionError, *TIMEOUT_ERRORS) as exc:
            if self.taken_over:                 # Werkzeug's way to end it
                return self.end_take_over(result)
            self.close_result(result)
            # Counted out, but still in the send buffer: the client never got those.
            self.bytes_sent = max(self.bytes_sent - (unsent_bytes(self.connection) or 0), 0)
            self.log_request(self.status_code if self.headers_sent else 0,
                             note=str(exc) if isinstance(exc, ClientStalled)
                             else "client disconnected")
            return False
        except BadRequest:
            self.close_result(result)
            raise
        except Exception as exc:
            if self.taken_over:
                return self.end_take_over(result, exc)
            self.close_result(result)
            return self.handle_app_error(environ)
        if not self.close_result(result):
            return False
        if self.response_error:
            self.log_request(self.status_code, note=self.response_error, level=logging.ERROR)
            return False
        self.log_request(self.status_code)
        return True

    def take_over(self, head=b""):
        """The app writes on the connection's socket itself (`head` first: a
        WebSocket's `101 Switching Protocols`, say).  The connection is the
        app's from now on: the server makes the socket blocking with no
        timeout, stops watching it, writes nothing more on it and closes it
        when the request returns; a stop shuts it down at once.  Refused
        (BadRequest, a 400 once the app returns) when bytes past the request
        head were read already: the app would never see them."""
        if self.taken_over is True:
            return
        if self.taken_over:
            raise self.taken_over
        pending = getattr(self.connection, "pending", None)     # TLS: decrypted, unread
        early = len(self.buffer) + (pending() if pending is not None else 0)
        if early:
            self.taken_over = BadRequest(400, "%d byte(s) after the request head came before "
                                              "the app took the connection over; it is not "
                                              "handed over" % early)
            raise self.taken_over
        self.taken_over = True
        self.server.hand_over(self)
        self.set_timeout(None)
        head = bytes(head)                  # a memoryview, say: find() below
        status = TAKEN_OVER_STATUS.match(head)
        self.taken_over_status = int(status.group(1)) if status else 0
        if not self.headers_sent:           # bytes_sent counts what follows the app's head
            end = head.find(b"\r\n\r\n")
            self.bytes_sent = -(end + 4) if end >= 0 else 0

    def end_take_over(self, result, exc=None):
        """The app returned, or raised, after it took the connection over (or
        was refused it): log one line; False, the connection closes.  An
        exception of TAKE_OVER_ENDINGS is its way to end, with no traceback."""
        self.close_result(result)
        if self.taken_over is not True:     # refused: the client gets the 400
            self.log_bad_request(self.taken_over)
            if not self.headers_sent:
                self.send_error(400, self.taken_over.reason)
            return False
        try:            # under any TLS layer: the app's threads reading it wake up
            socket.socket.shutdown(self.connection, socket.SHUT_RDWR)
        except OSError:
            pass
        status = self.status_code if self.headers_sent else self.taken_over_status
        if exc is None or isinstance(exc, TAKE_OVER_ENDINGS):
            self.log_request(status)
            return False
        logger.error("Error in the app while serving %s\n%s",
                     escape_control(self.request_line.decode("latin-1")),
                     build_report(exc, variables=False).text.rstrip())
        self.log_request(status, note="app error after it took the connection over",
                         level=logging.ERROR)
        return False

    def close_result(self, result):
        """Call the iterable's close(), as PEP 3333 requires; False if it raised."""
        close = getattr(result, "close", None)
        if close is None:
            return True
        try:
            close()
        except Exception:
            logger.error("Error in close() of the app's response", exc_info=True)
            return False
        return True

    def handle_app_error(self, environ):
        """The app raised: log its traceback, answer the error page (--debug) or a
        short note if nothing went out yet, else cut the response short."""
        exc = sys.exc_info()[1]
        server = self.server
        if isinstance(exc, AppNotRunning):
            report = exc.report             # the log had it once, when the app failed
        else:
            report = build_report(exc, environ=environ,
                                  variables=server.debug and not self.headers_sent)
            logger.error("Error in the app while serving %s\n%s",
                         escape_control(self.request_line.decode("latin-1")),
                         report.text.rstrip())
        if self.headers_sent:
            self.log_request(self.status_code, note="response cut short by an app error",
                             level=logging.ERROR)
            return False
        note = NOT_RUNNING_NOTE if isinstance(exc, AppNotRunning) else APP_ERROR_NOTE
        content_type, body = render_error(environ, report if server.debug else None, note,
                                          server.editor)
        if server.livereload is not None and is_page_request(environ) \
                and content_type.startswith("text/html"):
            body = with_script(body, server.livereload.tag)
        self.status, self.status_code = "500 Internal Server Error", 500
        head = self.error_head(500, content_type, len(body))
        if self.method == "HEAD":
            body = b""
        try:
            self.connection.sendall(head + body)
            self.bytes_sent = len(body)
        except OSError:
            pass
        self.log_request(500)
        return False

    def send_file(self, wrapper):
        """Send a FileWrapper's regular file with os.sendfile() (block reads
        under TLS); False if it must be iterated."""
        file = wrapper.filelike
        if not hasattr(file, "fileno"):
            return False
        try:
            fd = file.fileno()
            stat = os.fstat(fd)
            offset = file.tell()
        except (OSError, ValueError, io.UnsupportedOperation):
            return False
        if not (stat.st_mode & 0o170000 == 0o100000):          # regular files only
            return False
        available = max(stat.st_size - offset, 0)
        count = available if self.content_length is None else min(self.content_length, available)
        head = self.send_head(available)
        self.transmit(head, len(head))
        if not self.no_body and count:
            if self.kernel_timeouts and hasattr(os, "sendfile"):
                sent = self.sendfile(fd, offset, count)
                file.seek(offset + sent)
            else:
                sent = self.send_blocks(file, count)
            self.remaining -= sent
        if self.remaining:
            self.response_error = ("the file ended %d bytes before the Content-Length"
                                   % self.remaining)
        return True

    def sendfile(self, fd, offset, count):
        """Send `count` bytes of a file from `offset`, with the kernel's
        sendfile(); return how many went (fewer if the file shrank)."""
        out = self.connection.fileno()
        sent, since, queued = 0, time.monotonic(), unsent_bytes(self.connection)
        self.set_timeout(min(self.limits.body_timeout, SEND_CHECK_INTERVAL))
        try:
            while sent < count:
                try:
                    done = os.sendfile(out, fd, offset + sent, count - sent)
                except BlockingIOError:         # SO_SNDTIMEO: nothing went for a while
                    since, queued = self.await_progress(since, queued)
                    continue
                if not done:
                    break
                sent += done
                since, queued = time.monotonic(), unsent_bytes(self.connection)
        finally:
            self.bytes_sent += sent
        return sent

    def send_blocks(self, file, count):
        """Send `count` bytes of a file read in blocks (under TLS); return how many went."""
        sent = 0
        while sent < count:
            data = file.read(min(count - sent, FILE_BLOCK_SIZE))
            if not data:
                break
            self.transmit(data)
            sent += len(data)
        return sent

    # -- live reload's paths (LIVERELOAD_PREFIX) ----------------------------------

    def serve_live_reload(self, request, environ):
        """Answer a path under LIVERELOAD_PREFIX, never the app's: the script, or
        the event stream.  Logged at DEBUG: the browser's traffic, not the app's."""
        livereload, path, method = self.server.livereload, environ["PATH_INFO"], request.method
        self.body = None
        if request.chunked or request.content_length:
            self.keep_alive = False             # a body no browser sends here: left unread
        if path == LIVERELOAD_EVENTS and method == "GET":
            return self.stream_events(livereload)
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if path not in (LIVERELOAD_SCRIPT, LIVERELOAD_EVENTS):
            status, body = "404 Not Found", b"Not Found\n"
        elif method not in ("GET", "HEAD") or path == LIVERELOAD_EVENTS:
            status, body = "405 Method Not Allowed", b"Method Not Allowed\n"
            headers.append(("Allow", "GET" if path == LIVERELOAD_EVENTS else "GET, HEAD"))
        else:
            status, body = "200 OK", livereload.script
            headers = [("Content-Type", "text/javascript; charset=utf-8"),
                       ("Cache-Control", "no-cache")]
        self.start_response(status, headers)
        head = self.send_head(len(body))
        self.transmit(head if self.no_body else head + body, len(head))
        self.log_request(self.status_code, level=logging.DEBUG)
        self.idle = True
        return self.keep_alive

    def stream_events(self, livereload):
        """Send the events to the page until it goes or the server stops (then
        at once: the stream is idle, not a request in flight); False: close."""
        stream = livereload.open_stream(self.server)
        if stream is None:
            return False                # stopping: the page reconnects to the next worker
        self.status, self.status_code = "200 OK", 200
        self.idle = True
        self.set_timeout(self.limits.body_timeout)
        selector = selectors.DefaultSelector()
        try:
            head = b"HTTP/1.1 200 OK\r\n" + date_and_server_lines() + LIVERELOAD_STREAM_HEAD
            self.connection.sendall(head + livereload.greeting)
            self.log_request(200, level=logging.DEBUG)
            selector.register(self.connection, selectors.EVENT_READ)
            selector.register(stream.wakeup, selectors.EVENT_READ)
            while True:
                ready = [key.fileobj for key, _ in selector.select(LIVERELOAD_KEEPALIVE)]
                if self.connection in ready:
                    return False        # the page went: a browser sends nothing else here
                messages = stream.take() if ready else b":\n\n"
                if messages is None:
                    return False
                if messages:
                    self.connection.sendall(messages)
        except OSError:
            return False
        finally:
            selector.close()
            livereload.close_stream(stream)

    # -- errors and logging -----------------------------------------------------

    def error_head(self, status, content_type, length):
        """Response head of a response the server makes itself; it closes the connection."""
        import http
        return (b"HTTP/1.1 %d %s\r\n" % (status, http.HTTPStatus(status).phrase.encode())
                + date_and_server_lines()
                + ("Content-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                   % (content_type, length)).encode("latin-1"))

    def send_error(self, status, reason):
        """Answer a refused request with its status and the reason, then close."""
        import http
        body = ("%d %s: %s\n" % (status, http.HTTPStatus(status).phrase, reason)).encode()
        try:
            self.connection.sendall(self.error_head(status, "text/plain; charset=utf-8",
                                                    len(body)) + body)
        except OSError:
            pass

    def log_bad_request(self, exc):
        """One log line for a refused request: who, what status, why."""
        line = getattr(self, "request_line", b"") if not self.idle else b""
        text = escape_control(line.decode("latin-1"))
        logger.warning("%s %s %s: %s", self.remote, '"%s"' % text[:200] if line else "-",
                       exc.status or "-", escape_control(exc.reason),
                       extra=access_fields(text, exc.status or 0, 0, None, self.client,
                                           exc.reason))
        self.request_line = b""

    def log_request(self, status, note=None, level=logging.INFO):
        """The access log line: request line, status, bytes sent, duration;
        the client first when the server logs clients (see WSGIServer).  The
        record carries each as a field (access_fields())."""
        if self.server.quiet and note is None:
            return
        duration = (time.perf_counter() - self.started) * 1000
        line = escape_control(self.request_line.decode("latin-1"))
        message = '"%s" %s %d %.1fms' % (line, status or "-", self.bytes_sent, duration)
        if self.server.log_clients:
            message = "%s %s" % (self.client, message)
        if note:
            message += " (%s)" % note
        logger.log(level, message, extra=access_fields(line, status or 0, self.bytes_sent,
                                                       duration, self.client, note))


# Access-log records carry these fields, for a logging config's formatter:
# "%(method)s %(path)s %(status)s", or all of them as JSON (--log-config).
ACCESS_FIELDS = ("method", "path", "query", "protocol", "status", "bytes", "duration_ms",
                 "client", "note")


def access_fields(request_line, status, sent, duration, client, note):
    """An access-log record's fields, by ACCESS_FIELDS' names, from the
    request line as logged; None where unknown (the parts of a request line
    that did not parse, the duration of a refused request)."""
    parts = request_line.split(" ")
    method, target, protocol = parts if len(parts) == 3 else (None, None, None)
    path, _, query = target.partition("?") if target is not None else (None, "", None)
    return dict(zip(ACCESS_FIELDS, (method, path, query, protocol, status, sent,
                                    None if duration is None else round(duration, 1),
                                    client, note)))


# -- behind a proxy: --proxy-headers ------------------------------------------------
# From a peer of --forwarded-allow-ips, the forwarding headers replace the
# environ's view of the connection with the client's.  Each header is a list
# with one entry per proxy, the nearest last: read from the right, entries
# are skipped while they name trusted proxies; the first that does not is the
# client, the values beside it are the ones its first proxy saw.

class ProxyTrust:
    """--forwarded-allow-ips: the proxies whose forwarding headers count, as
    addresses, networks ("10.0.0.0/8"), "unix" for unix-socket peers, or "*"."""

    def __init__(self, entries):
        import ipaddress
        self.everyone = "*" in entries
        self.unix = "unix" in entries
        self.networks = []
        for entry in entries:
            if entry not in ("*", "unix"):
                try:
                    self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                except ValueError:
                    raise ValueError('"%s" is not an IP address, a network like 10.0.0.0/8, '
                                     '"unix" or "*"' % entry) from None
        # Caches, bounded as the module's are (CACHE_ENTRIES, CACHE_ENTRY_LENGTH):
        self.known = {}                 # address -> trusted, for the addresses seen
        self.read = {}                  # forwarding headers seen -> proxy_values()

    def trusts(self, address):
        """Whether a peer or a forwarded node (an address, "unix:" for a
        unix-socket peer, or an identifier like "unknown") is a trusted proxy."""
        if self.everyone:
            return True
        trusted = self.known.get(address)
        if trusted is None:
            trusted = self.check(address)
            if len(self.known) < CACHE_ENTRIES and len(address) <= CACHE_ENTRY_LENGTH:
                self.known[address] = trusted
        return trusted

    def check(self, address):
        import ipaddress
        if address.startswith("unix:"):
            return self.unix
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:              # "unknown", _hidden: a proxy that says not who
            return False
        if ip.version == 6 and ip.ipv4_mapped:          # ::ffff:127.0.0.1 on a dual stack
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


def find_client(hops, node_of, trust):
    """(index, node) of the client among a forwarding header's `hops`
    (leftmost first): from the right, the first whose node is not a trusted
    proxy's, or the leftmost.  node_of(hop) is (address or None, port)."""
    for index in range(len(hops) - 1, -1, -1):
        node = node_of(hops[index])
        if index == 0 or node[0] is None or not trust.trusts(node[0]):
            return index, node


def forwarded_values(value, trust):
    """What a Forwarded header says of the client: "for" (address, port),
    "proto" and "host", from the element its first trusted proxy wrote."""
    elements = parse_forwarded(value)
    if not elements:
        return {}
    index, node = find_client(elements, element_node, trust)
    values = {"for": node} if node[0] is not None else {}
    if "proto" in elements[index]:
        values["proto"] = forwarded_scheme(elements[index]["proto"], "Forwarded")
    if "host" in elements[index]:
        values["host"] = forwarded_host(elements[index]["host"], "Forwarded")
    return values


def element_node(element):
    """The node of a Forwarded element's for=; (None, None) if it has none."""
    return parse_node(element["for"], "Forwarded") if "for" in element else (None, None)


X_FORWARDED = (("proto", "HTTP_X_FORWARDED_PROTO", "X-Forwarded-Proto", forwarded_scheme),
               ("host", "HTTP_X_FORWARDED_HOST", "X-Forwarded-Host", forwarded_host),
               ("port", "HTTP_X_FORWARDED_PORT", "X-Forwarded-Port", forwarded_port))


def x_forwarded_values(headers, trust):
    """What the X-Forwarded-* headers say of the client: "for" from
    X-Forwarded-For; "proto", "host" and "port" from the entry of the same
    hop in theirs, or their first when they have fewer (set, not appended)."""
    values = {}
    hops = 1
    entries = list_entries(headers.get("HTTP_X_FORWARDED_FOR"))
    if entries:
        index, values["for"] = find_client(
            entries, lambda entry: parse_node(entry, "X-Forwarded-For"), trust)
        hops = len(entries) - index
    for name, key, header, check in X_FORWARDED:
        entries = list_entries(headers.get(key))
        if entries:
            values[name] = check(entries[max(len(entries) - hops, 0)], header)
    return values


def list_entries(value):
    """The non-empty entries of a comma-separated header value (None: none)."""
    if not value:
        return []
    return [entry for entry in re.split(LIST_SEPARATOR, value) if entry]


FORWARDING_KEYS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                   "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT")


def proxy_values(headers, trust):
    """What a trusted peer's forwarding headers say of the client: read_proxy_values(),
    once for each set of them (a proxy sends the same ones for a client's requests)."""
    key = tuple(headers.get(name) for name in FORWARDING_KEYS)
    values = trust.read.get(key)
    if values is None:
        values = read_proxy_values(headers, trust)
        if len(trust.read) < CACHE_ENTRIES \
                and sum(len(value) for value in key if value) <= CACHE_ENTRY_LENGTH:
            trust.read[key] = values
    return values


def read_proxy_values(headers, trust):
    """What a trusted peer's forwarding headers say of the client.  Where
    Forwarded and X-Forwarded-* both say something, they must agree: else
    the proxy set one and passed the other on from the client (a 400)."""
    values = forwarded_values(headers["HTTP_FORWARDED"], trust) \
        if "HTTP_FORWARDED" in headers else {}
    for name, value in x_forwarded_values(headers, trust).items():
        known = compared(name, values.setdefault(name, value))
        if known != compared(name, value):
            raise BadRequest(400, 'Forwarded and X-Forwarded-%s disagree: "%s" and "%s"' % (
                name.title(), escape_control(known), escape_control(compared(name, value))))
    return values


def compared(name, value):
    """A forwarded value as Forwarded's and X-Forwarded-*'s are compared: an
    address without its port, in lower case."""
    return (value[0] if name == "for" else value).lower()


def forwarded_environ(headers, connection, trust):
    """The environ values a trusted peer's forwarding headers set: REMOTE_ADDR
    and REMOTE_PORT, wsgi.url_scheme, HTTP_HOST, SERVER_NAME and SERVER_PORT,
    each with the connection's own under FORWARDED_ORIGINAL + its name.
    `headers` are the request's HTTP_* values, `connection` the handler's."""
    values = proxy_values(headers, trust)
    environ = {}
    if "for" in values:
        environ["REMOTE_ADDR"], client_port = values["for"]
        environ["REMOTE_PORT"] = client_port or "0"
    if "proto" in values:
        environ["wsgi.url_scheme"] = values["proto"]
    if "proto" in values or "host" in values or "port" in values:
        scheme = values.get("proto", connection["wsgi.url_scheme"])
        host = values.get("host", headers.get("HTTP_HOST"))
        if not host:                    # HTTP/1.0 without Host: the server's address
            host = connection["SERVER_NAME"]
            host = "[%s]" % host if ":" in host else host
        name, port = split_host(host)
        port = values.get("port") or port or SCHEME_PORTS[scheme]
        environ["SERVER_NAME"], environ["SERVER_PORT"] = name, port
        if "host" in values or "port" in values:
            environ["HTTP_HOST"] = name if port == SCHEME_PORTS[scheme] else "%s:%s" % (name, port)
    for key in list(environ):
        original = (headers if key == "HTTP_HOST" else connection).get(key)
        if original is not None:
            environ[FORWARDED_ORIGINAL + key] = original
    return environ


# ---- Error reports -----------------------------------------------------------
# A traceback as plain data, built once (frames, source lines, local variables
# as text, chained exceptions, groups, notes), then rendered as text for the log
# and for curl, or as the error page.

class Record:
    """Plain data: its fields, in __slots__ order, are given positionally.  (A
    namedtuple costs a worker some 70 us to define at every start.)"""

    __slots__ = ()

    def __init__(self, *values):
        for name, value in zip(self.__slots__, values):
            setattr(self, name, value)


class Frame(Record):
    """One frame.  lines: (number, text, current, (start, end) of the failing
    expression or None); variables: (name, text, whether repr() raised);
    repeat: how many times in a row it called itself."""

    __slots__ = ("filename", "lineno", "function", "module", "library", "lines", "variables",
                 "repeat")


class ExceptionInfo(Record):
    """One exception.  frames: None if never raised; omitted: (index, count) of
    frames left out; syntax: a SyntaxError's place, as a Frame; group: a group's
    (member chains, how many more); link: 'cause' or 'context' to the next
    exception; folded: identical ones before it; earlier: older ones left out."""

    __slots__ = ("name", "message", "notes", "frames", "omitted", "syntax", "group", "link",
                 "folded", "earlier")


class Report(Record):
    """What went wrong: a title (or None), the chain of exceptions, root cause
    first, its plain text as the log got it, and when it was made."""

    __slots__ = ("title", "chain", "text", "created")


CHAIN_LINKS = {
    "cause": "The above exception was the direct cause of the following exception:",
    "context": "During handling of the above exception, another exception occurred:",
}


def build_report(exc, title=None, environ=None, variables=True):
    """The Report of `exc` (None: a title alone).  Local variables only with
    `variables`; the request's secrets found in them are masked."""
    secrets = request_secrets(environ) if environ and variables else ()
    chain = exception_chain(exc, variables, secrets, 0) if exc is not None else []
    text = "\n".join(chain_lines(chain)) + "\n" if chain else (title or "") + "\n"
    return Report(title, chain, text, time.time())


def exception_chain(exc, variables, secrets, depth):
    """The exceptions that led to `exc`, root cause first, as Python's traceback
    chains them; consecutive ones that repeat the same failure are folded."""
    links, seen, how = [], set(), None
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        links.append((exc, visible_frames(exc.__traceback__), how))
        if exc.__cause__ is not None:
            exc, how = exc.__cause__, "cause"
        elif exc.__context__ is not None and not exc.__suppress_context__:
            exc, how = exc.__context__, "context"
        else:
            exc = None
    links.reverse()
    folded = []                 # [exc, frames, how, count of the identical ones before]
    for exc, frames, how in links:
        if folded and same_failure(folded[-1][:2], (exc, frames)):
            folded[-1][2:] = [how, folded[-1][3] + 1]
        else:
            folded.append([exc, frames, how, 0])
    earlier = max(len(folded) - MAX_CHAIN, 0)
    return [exception_info(exc, frames, how, count, earlier if index == 0 else 0,
                           variables, secrets, depth)
            for index, (exc, frames, how, count) in enumerate(folded[earlier:])]


def same_failure(first, second):
    """Whether two (exception, frames) are the same failure again: one type, one
    message, raised from the same lines of the same functions, or at least of
    the user's own (a framework that retries an import while handling its
    failure goes through other frames of its own each time)."""
    if type(first[0]) is not type(second[0]) or safe_str(first[0]) != safe_str(second[0]):
        return False
    keys = [[frame_key(frame, lineno) for frame, lineno, lasti in frames or ()]
            for exc, frames in (first, second)]
    if keys[0] == keys[1]:
        return True
    users = [[key for key in frame_keys if not is_library_file(key[0])] for frame_keys in keys]
    return bool(users[0]) and users[0] == users[1]


def frame_key(frame, lineno):
    """What tells one line of a function from another; a module imported again
    has new code objects."""
    code = frame.f_code
    return code.co_filename, code.co_firstlineno, code.co_name, lineno


def visible_frames(tb):
    """(frame, line number, last instruction) of a traceback's frames, without
    runserver.py's own, the import system's, and those with a true
    `__traceback_hide__` among their local variables; None without a traceback
    (an exception group's member that was never raised)."""
    if tb is None:
        return None
    frames = []
    while tb is not None:
        frame = tb.tb_frame
        if not is_internal_file(frame.f_code.co_filename):
            try:
                hidden = frame.f_locals.get("__traceback_hide__")
            except Exception:           # a class body's namespace of the app's own making
                hidden = False
            if not hidden:
                frames.append((frame, tb.tb_lineno or 0, tb.tb_lasti))
        tb = tb.tb_next
    return frames


def is_internal_file(filename):
    """runserver.py itself, or the import system's bootstrap (which Python's own
    tracebacks leave out too)."""
    if filename == __file__ or filename.startswith("<") and "importlib._bootstrap" in filename:
        return True             # PyPy names it "<builtin>/frozen importlib._bootstrap..."
    return os.path.dirname(filename) == os.path.dirname(importlib.__file__) \
        and os.path.basename(filename) in ("__init__.py", "_bootstrap.py",
                                           "_bootstrap_external.py")


def exception_info(exc, frames, how, folded, earlier, variables, secrets, depth):
    """The ExceptionInfo of one exception of a chain."""
    runs, omitted = fold_recursion(frames or [])
    repr_value = value_repr() if variables else None
    return ExceptionInfo(
        exception_name(exc), exception_message(exc), exception_notes(exc),
        None if frames is None else [frame_info(frame, lineno, lasti, repeat, repr_value, secrets)
                                     for frame, lineno, lasti, repeat in runs],
        omitted, syntax_error_frame(exc), group_members(exc, variables, secrets, depth),
        how, folded, earlier)


def fold_recursion(frames):
    """Frames as [frame, line number, last instruction, repeat]: a line that
    calls itself again and again is one, with the innermost frame (whose
    variables are shown).  Past MAX_FRAMES, the outermost few and the
    innermost many are kept: returns them and (index, count) of the others."""
    runs = []
    for frame, lineno, lasti in frames:
        if runs and frame_key(*runs[-1][:2]) == frame_key(frame, lineno):
            runs[-1][0] = frame
            runs[-1][3] += 1
        else:
            runs.append([frame, lineno, lasti, 1])
    if len(runs) <= MAX_FRAMES:
        return runs, None
    head = MAX_FRAMES // 5
    omitted = (head, len(runs) - MAX_FRAMES)
    return runs[:head] + runs[head + omitted[1]:], omitted


def group_members(exc, variables, secrets, depth):
    """An exception group's (member chains, how many more were left out), as
    deep and as wide as Python's traceback shows them; None for others."""
    import builtins
    members = getattr(exc, "exceptions", None)
    if not isinstance(exc, getattr(builtins, "BaseExceptionGroup", ())) \
            or not isinstance(members, tuple):
        return None
    if depth >= GROUP_DEPTH:
        return [], len(members)
    return ([exception_chain(member, variables, secrets, depth + 1)
             for member in members[:GROUP_WIDTH]], max(len(members) - GROUP_WIDTH, 0))


def exception_notes(exc):
    """The notes added to the exception (add_note(), 3.11+), as text."""
    try:
        notes = exc.__notes__
    except Exception:           # none, or a property of the app's own that raised
        return []
    if not isinstance(notes, (list, tuple)):
        return []
    return [clip(note if isinstance(note, str) else safe_str(note), MESSAGE_LIMIT)
            for note in notes]


def exception_name(exc):
    """The exception's type as Python's traceback names it: module.QualName,
    without the module for built-in types and __main__'s."""
    cls = type(exc)
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", cls.__name__)
    return name if module in ("builtins", "__main__", None) else "%s.%s" % (module, name)


def exception_message(exc):
    """str() of the exception (a SyntaxError's message alone), bounded; never raises."""
    if isinstance(exc, SyntaxError) and isinstance(exc.msg, str):
        return clip(exc.msg, MESSAGE_LIMIT)
    return clip(safe_str(exc), MESSAGE_LIMIT)


def safe_str(value):
    try:
        return str(value)
    except Exception:
        return "<str() of a %s raised an exception>" % type(value).__name__


def clip(text, limit):
    """`text` cut at `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return "%s... (%d characters in all)" % (text[:limit], len(text))


def frame_info(frame, lineno, lasti, repeat, repr_value, secrets):
    """The Frame of one frame object; local variables if repr_value is given."""
    import linecache
    code = frame.f_code
    filename = code.co_filename
    linecache.checkcache(filename)
    lines = linecache.getlines(filename, frame.f_globals)
    span = expression_span(code, lasti, lineno, lines)
    module = frame.f_globals.get("__name__")
    name = getattr(code, "co_qualname", code.co_name)     # Class.method, on 3.11+
    if not name.endswith(code.co_name):     # a template engine named the code, not the class
        name = code.co_name
    return Frame(filename, lineno, name,
                 module if isinstance(module, str) else "", is_library_file(filename),
                 source_lines(lines, lineno, span),
                 local_variables(frame, repr_value, secrets) if repr_value else [], repeat)


def expression_span(code, lasti, lineno, lines):
    """(first line, last line, start, end) of the failing expression, columns in
    characters, where the interpreter records positions (3.11+); else None."""
    if not hasattr(code, "co_positions") or lasti < 0:
        return None
    position = next(itertools.islice(code.co_positions(), lasti // 2, None), None)
    if position is None or None in position or position[0] != lineno \
            or position[1] - position[0] > CONTEXT_LINES * 2:
        return None
    first, last, start, end = position
    if not 0 < first <= last <= len(lines):
        return None
    # The interpreter counts columns in UTF-8 bytes.
    start = len(lines[first - 1].encode("utf-8")[:start].decode("utf-8", "replace"))
    end = len(lines[last - 1].encode("utf-8")[:end].decode("utf-8", "replace"))
    line = lines[first - 1].rstrip()
    indent = len(line) - len(line.lstrip())
    if start < indent:          # not this file's code: a template's, compiled by its engine
        return None
    if first == last and start == indent and end >= len(line):
        return None             # the whole line: nothing to point at
    return first, last, start, end


def source_lines(lines, lineno, span):
    """The frame's line and CONTEXT_LINES either side, as (number, text, current,
    (start, end) of the expression on that line or None)."""
    if not 0 < lineno <= len(lines):
        return []
    first, last = (span[0], span[1]) if span else (lineno, lineno)
    result = []
    for number in range(max(lineno - CONTEXT_LINES, 1),
                        min(last + CONTEXT_LINES, len(lines)) + 1):
        text = lines[number - 1].rstrip("\r\n")
        current = first <= number <= last
        mark = None
        if span and current:
            start = span[2] if number == first else len(text) - len(text.lstrip())
            mark = (min(start, LINE_LIMIT), min(span[3] if number == last else len(text),
                                                LINE_LIMIT))
        result.append((number, clip(text, LINE_LIMIT), current, mark))
    return result


def syntax_error_frame(exc):
    """Where a SyntaxError is, as a Frame without a function; None for others."""
    if not isinstance(exc, SyntaxError) or not isinstance(exc.lineno, int) or exc.lineno < 1:
        return None
    import linecache
    filename = exc.filename if isinstance(exc.filename, str) else "<unknown>"
    lines, lineno = linecache.getlines(filename), exc.lineno
    in_file = lineno <= len(lines)      # else source compiled from a string
    line = lines[lineno - 1] if in_file else exc.text if isinstance(exc.text, str) else ""
    line = line.rstrip("\r\n")
    last = getattr(exc, "end_lineno", None)
    if not (in_file and isinstance(last, int) and lineno <= last <= len(lines)
            and last - lineno <= CONTEXT_LINES * 2):
        last = lineno
    offset, end = exc.offset, getattr(exc, "end_offset", None)
    start = offset - 1 if isinstance(offset, int) and 0 < offset <= len(line) + 1 \
        else len(line) - len(line.lstrip())
    end = end - 1 if isinstance(end, int) and end > 0 and (end - 1 > start or last > lineno) \
        else start + 1
    if in_file:
        source = source_lines(lines, lineno, (lineno, last, start, end))
    else:
        source = [(lineno, clip(line, LINE_LIMIT), True, (min(start, LINE_LIMIT),
                                                            min(end, LINE_LIMIT)))]
    return Frame(filename, lineno, "", "", False, source, [], 1)


def local_variables(frame, repr_value, secrets):
    """The frame's local variables as (name, text, whether repr() raised), sorted,
    at most MAX_LOCALS, dunder names left out."""
    try:
        items = list(frame.f_locals.items())
    except Exception:           # a class body's namespace of the app's own making
        return []
    names = sorted(((name, value) for name, value in items if isinstance(name, str)
                    and not (name.startswith("__") and name.endswith("__"))),
                   key=lambda item: item[0])
    result = []
    for name, value in names[:MAX_LOCALS]:
        text, failed = describe_value(repr_value, value)
        result.append((name, mask_secrets(text, secrets), failed))
    if len(names) > MAX_LOCALS:
        result.append(("...", "%d more variables not shown" % (len(names) - MAX_LOCALS), True))
    return result


def describe_value(repr_value, value):
    """(bounded repr() of value, whether repr() raised); never raises."""
    try:
        return repr_value(value), False
    except Exception as exc:
        return "repr() raised %s" % exception_header(exc), True


def exception_header(exc):
    """'Type: message', as the last line of a traceback."""
    name, message = exception_name(exc), exception_message(exc)
    return "%s: %s" % (name, message) if message else name


def value_repr():
    """A repr() bounded in depth, width and length (reprlib's), which shows a
    repr() that raises inside a container as such; a top-level one raises."""
    import reprlib
    import builtins
    shower = reprlib.Repr()
    shower.maxlevel, shower.maxlong = 3, 100
    shower.maxdict = shower.maxlist = shower.maxtuple = shower.maxset = 20
    shower.maxfrozenset = shower.maxdeque = shower.maxarray = 20

    def bounded(value, level):
        limit = VALUE_LIMIT if level == shower.maxlevel else NESTED_VALUE_LIMIT
        if isinstance(value, (str, bytes, bytearray)):
            value = value[:limit + 1]
        try:
            return clip(builtins.repr(value), limit)
        except Exception as exc:
            if level == shower.maxlevel:
                raise
            return "<repr() raised %s>" % exception_header(exc)
    shower.repr_instance = shower.repr_str = shower.repr_bytes = bounded
    return lambda value: clip(shower.repr(value), VALUE_LIMIT)


@functools.lru_cache(maxsize=None)
def library_directories():
    """The directories of the standard library and of installed packages."""
    import site
    import sysconfig
    paths = [sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib",
                                                       "platlib")]
    try:
        paths += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:      # an old virtualenv's site module
        pass
    return tuple({os.path.join(os.path.realpath(path), "") for path in paths if path})


def is_library_file(filename):
    """Whether the file is the standard library's or an installed package's."""
    if filename.startswith("<"):            # frozen modules, generated code
        return True
    path = os.path.realpath(filename)
    parts = path.split(os.sep)
    return "site-packages" in parts or "dist-packages" in parts \
        or path.startswith(library_directories())


def request_rows(environ):
    """The request as (title, [(name, value)]) tables: headers, query parameters,
    cookies and the WSGI environ (values as text)."""
    import urllib.parse
    items = list(environ.items())   # a framework's request object adds keys when shown
    headers = [(key[5:].replace("_", "-").title(), value) for key, value in items
               if isinstance(key, str) and key.startswith("HTTP_") and isinstance(value, str)]
    headers += [(key.replace("_", "-").title(), environ[key])
                for key in ("CONTENT_TYPE", "CONTENT_LENGTH")
                if isinstance(environ.get(key), str) and environ[key]]
    query = urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True,
                                   errors="replace")
    cookies = [tuple(part.strip().partition("=")[::2])
               for part in environ.get("HTTP_COOKIE", "").split(";") if part.strip()]
    repr_value = value_repr()
    variables = [(key, value if isinstance(value, str)
                  else describe_value(repr_value, value)[0])
                 for key, value in items if isinstance(key, str)]
    return [("Headers", headers), ("Query parameters", query), ("Cookies", cookies),
            ("WSGI environ", variables)]


def request_tables(environ):
    """request_rows(), sorted, with the values of names like SECRET_NAMES masked,
    and wherever else they appear (QUERY_STRING, say)."""
    secrets = request_secrets(environ)
    return [(title, [(name, MASK if re.search(SECRET_NAMES, name)
                      else mask_secrets(clip(value, VALUE_LIMIT), secrets))
                     for name, value in sorted(rows)])
            for title, rows in request_rows(environ)]


def request_secrets(environ):
    """The values request_tables() masks (and the query's raw forms of them) that
    are long enough to be masked wherever else they appear: in local variables
    and in the URL."""
    rows = [row for title, table in request_rows(environ) for row in table]
    rows += [part.partition("=")[::2] for part in environ.get("QUERY_STRING", "").split("&")]
    return sorted({value for name, value in rows
                   if re.search(SECRET_NAMES, name) and len(value) >= MIN_SECRET_LENGTH},
                  key=len, reverse=True)


def mask_secrets(text, secrets):
    """`text` with every one of request_secrets() in it masked, and the values
    of query parameters named like secrets."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    if "=" in text:
        text = re.sub(SECRET_PARAMETER, r"\1" + MASK, text, flags=re.IGNORECASE)
    return text


# -- the report as text: Python's traceback format --------------------------------

def chain_lines(chain):
    """A chain of exceptions as the lines Python's traceback prints for it."""
    lines = []
    for info in chain:
        if info.earlier:
            lines += ["[%d earlier chained exceptions not shown]" % info.earlier, ""]
        lines += group_lines(info) if info.group else exception_lines(info, "Traceback")
        if info.folded:
            lines += ["", "[The same exception, from the same lines, was raised %d more "
                          "time%s, each while handling the one before: folded into the one "
                          "above.]" % (info.folded, "s" if info.folded > 1 else "")]
        if info.link:
            lines += ["", CHAIN_LINKS[info.link], ""]
    return lines


def exception_lines(info, heading):
    """One exception: its frames, a SyntaxError's place, its header and notes."""
    lines = ["%s (most recent call last):" % heading] if info.frames else []
    for index, frame in enumerate(info.frames or ()):
        if info.omitted and index == info.omitted[0]:
            lines.append("  [... %d frames not shown ...]" % info.omitted[1])
        lines.append('  File "%s", line %d, in %s' % (frame.filename, frame.lineno,
                                                      frame.function))
        lines += code_lines(frame)
        if frame.repeat > 1:
            lines.append("  [Previous line repeated %d more times]" % (frame.repeat - 1))
    if info.syntax:
        lines.append('  File "%s", line %d' % (info.syntax.filename, info.syntax.lineno))
        lines += code_lines(info.syntax)
    lines.append("%s: %s" % (info.name, info.message) if info.message else info.name)
    return lines + info.notes


def code_lines(frame):
    """A frame's current line(s), dedented, with carets under the expression
    when it is on one line."""
    current = [(text, mark) for number, text, is_current, mark in frame.lines if is_current]
    if not current:
        return []
    indent = min(len(text) - len(text.lstrip()) for text, mark in current if text.strip()) \
        if any(text.strip() for text, mark in current) else 0
    lines = ["    " + text[indent:].rstrip() for text, mark in current]
    if len(current) == 1 and current[0][1]:
        start, end = current[0][1]
        lines.append("    " + " " * (start - indent) + "^" * max(end - start, 1))
    return lines


def group_lines(info):
    """An exception group, its members boxed below it as Python prints them."""
    own = exception_lines(info, "Exception Group Traceback")
    lines = ["  + " + own[0]] + ["  | " + line for line in own[1:]]
    members, left_out = info.group
    for number, member in enumerate(members, 1):
        lines.append(("  +-+" if number == 1 else "    +") + "-" * 16 + " %d " % number
                     + "-" * 16)
        lines += ["    | " + line if line else "    |" for line in chain_lines(member)]
    if left_out:
        lines.append(("  +-+" if not members else "    +") + "-" * 16 + " ... " + "-" * 16)
        lines.append("    | and %d more exceptions" % left_out)
    lines.append("    +" + "-" * 36)
    return lines


# ---- Pages -------------------------------------------------------------------
# HTML, CSS and JS are data: templates whose $fields fill() replaces, escaping
# every value that is not itself a filled template (Html).

class Html(str):
    """A filled template: fill() inserts it as it is, never escaped twice."""


def fill(template, **values):
    """`template` with its $fields replaced by `values`, each escaped with
    html.escape() unless it is Html."""
    import html
    import string
    return Html(string.Template(template).substitute({
        name: value if isinstance(value, Html) else html.escape(str(value))
        for name, value in values.items()}))


def join(fragments):
    """Filled templates one after the other."""
    return Html("".join(fragments))


ERROR_PAGE_CSS = """
:root{--bg:#fff;--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--panel:#f6f8fa;--code:#0b0f14;
--accent:#b42318;--head:#fef3f2;--current:#fff8c5;--mark:#ffcecb;--library:#f6f8fa;
  --link:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#8d96a0;
  --line:#30363d;
--panel:#161b22;--code:#e6edf3;--accent:#ff7b72;--head:#2a1215;--current:#3b3413;--mark:#6e1f1f;
--library:#11161d;--link:#58a6ff}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
  font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
code,pre,textarea,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,
  "Liberation Mono",monospace}
a{color:var(--link)}
.wrap{max-width:78rem;margin:0 auto;padding:0 1.25rem}
header{background:var(--head);border-bottom:1px solid var(--line);padding:1.25rem 0 1rem}
.status{margin:0;color:var(--muted);font-size:.85rem}
.title{margin:.35rem 0;font-size:1rem}
h1{margin:.2rem 0;font-size:1.55rem;line-height:1.25;color:var(--accent);overflow-wrap:anywhere}
.message{margin:.3rem 0 .6rem;font-size:1.05rem;white-space:pre-wrap;overflow-wrap:anywhere;
  max-height:16em;overflow:auto}
.note{margin:.2rem 0;padding:.2rem .6rem;border-left:3px solid var(--line);white-space:pre-wrap;
  overflow-wrap:anywhere}
.where{margin:.5rem 0;font-size:1rem}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;margin:.75rem 0 0;
  font-size:.85rem}
.facts dt{color:var(--muted)}.facts dd{margin:0;overflow-wrap:anywhere}
nav{position:sticky;top:0;z-index:1;background:var(--bg);border-bottom:1px solid var(--line)}
nav .wrap{display:flex;flex-wrap:wrap;gap:.25rem 1.25rem;align-items:center;padding-top:.45rem;
  padding-bottom:.45rem}
nav a{text-decoration:none}
button{font:inherit;font-size:.85rem;padding:.15rem .7rem;border:1px solid var(--line);
  border-radius:6px;background:var(--panel);color:var(--fg);cursor:pointer}
nav button{margin-left:auto}
section{padding:.5rem 0 1rem}
h2{font-size:1.2rem;margin:1rem 0 .5rem}h2 small{color:var(--muted);font-weight:normal;
  font-size:.8rem}
h3{font-size:1rem;margin:1rem 0 .4rem}
.exception>h3{font-size:1.05rem;overflow-wrap:anywhere}
.type{color:var(--accent)}
.chain{margin:1.25rem 0;padding:.4rem .8rem;border-left:3px solid var(--accent);
  color:var(--muted);font-style:italic}
.folded,.omitted,.empty{color:var(--muted);font-size:.9rem;margin:.4rem 0}
details{margin:.35rem 0}
summary{cursor:pointer;list-style:none}
summary::-webkit-details-marker{display:none}
summary::before{content:"\\25B8";display:inline-block;width:1.1em;color:var(--muted)}
details[open]>summary::before{content:"\\25BE"}
.frame{border:1px solid var(--line);border-radius:6px;background:var(--bg);overflow:hidden}
.frame>summary{padding:.35rem .7rem}
.frame.focus{border-color:var(--accent);border-left-width:4px}
.frame .place{overflow-wrap:anywhere}
.frame .function{font-weight:600}
.frame .dir{color:var(--muted)}
.repeat{margin-left:.5rem;padding:0 .4rem;border-radius:9px;background:var(--mark);
  font-size:.8rem}
.badge{margin-left:.5rem;padding:0 .4rem;border-radius:9px;background:var(--accent);
  color:var(--bg);font-size:.75rem}
.frame>summary code{display:block;margin:.1rem 0 0 1.1em;white-space:pre;overflow:hidden;
  text-overflow:ellipsis;color:var(--code);font-size:.85rem}
.frame[open]>summary code{display:none}
pre.source{margin:0;padding:.35rem 0;overflow-x:auto;background:var(--panel);
  border-top:1px solid var(--line);font-size:13px;line-height:1.5;tab-size:4}
pre.source span{display:block;padding-right:1rem;min-width:max-content}
pre.source .current{background:var(--current)}
pre.source i{display:inline-block;width:4.2em;padding-right:1em;text-align:right;
  color:var(--muted);font-style:normal;user-select:none}
mark{background:var(--mark);color:inherit;border-bottom:2px solid var(--accent)}
.library{border:1px dashed var(--line);border-radius:6px;padding:0 .5rem;
  background:var(--library)}
.library>summary{padding:.3rem .2rem;color:var(--muted);font-size:.9rem}
.library .frame{margin-left:.4rem}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;vertical-align:top;padding:.2rem .7rem;border-top:1px solid var(--line)}
th{width:14rem;font-weight:600;overflow-wrap:anywhere}
td{white-space:pre-wrap;overflow-wrap:anywhere}
.variables{border-top:1px solid var(--line)}
.variables table,.kv{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.failed{color:var(--accent);font-style:italic}
.masked{color:var(--muted)}
.group{margin:.5rem 0 .5rem .4rem;padding-left:.8rem;border-left:2px solid var(--line)}
.member>h4{margin:.8rem 0 .2rem;font-size:.9rem;color:var(--muted)}
textarea{width:100%;min-height:18rem;padding:.6rem;border:1px solid var(--line);
  border-radius:6px;background:var(--panel);color:var(--fg);font-size:13px;white-space:pre;
  overflow-wrap:normal}
@media (max-width:40rem){
body{font-size:14px}.wrap{padding:0 .75rem}h1{font-size:1.3rem}
th,td{display:block;width:auto;border:0;padding:.05rem .5rem}tr{display:block;
  border-top:1px solid var(--line);padding:.2rem 0}
pre.source{font-size:12px}pre.source i{width:3em;padding-right:.6em}
}
"""

ERROR_PAGE_JS = """
var expand = document.getElementById("expand"), copy = document.getElementById("copy");
expand.hidden = false;
if (copy) copy.hidden = false;
expand.onclick = function () {
  var open = expand.textContent == "Expand all";
  document.querySelectorAll("details").forEach(function (d) { d.open = open; });
  expand.textContent = open ? "Collapse all" : "Expand all";
};
if (copy) copy.onclick = function () {
  var text = document.getElementById("plain");
  text.select();
  var done = navigator.clipboard ? navigator.clipboard.writeText(text.value)
                                 : Promise.resolve(document.execCommand("copy"));
  done.then(function () { copy.textContent = "Copied"; });
};
"""

ERROR_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>$title</title>
<style>$css</style>
</head>
<body>
<header><div class="wrap">
<p class="status">500 Internal Server Error &middot; $server</p>
$summary
<dl class="facts">$facts</dl>
</div></header>
<nav><div class="wrap">$links
<button id="expand" type="button" hidden>Expand all</button></div></nav>
<main class="wrap">
$traceback
$request
<section id="python"><h2>Python</h2><table class="kv">$python</table>
<details><summary>sys.path</summary><table class="kv">$path</table></details></section>
$text</main>
<script>$js</script>
</body>
</html>
"""

SUMMARY_HTML = """$title<h1>$name</h1>
<p class="message mono">$message</p>$notes
<p class="where">$where</p>$chained"""
NAME_PART_HTML = """$part<wbr>"""        # a long dotted name may break after a part
TITLE_HTML = """<p class="title">$title</p>"""
NOTE_HTML = """<p class="note mono">$note</p>"""
WHERE_HTML = """<a href="#$anchor">$place</a> in <code>$function</code>"""
SYNTAX_WHERE_HTML = """<a href="#$anchor">$place</a>: <code>$line</code>"""
CHAINED_HTML = """<p class="where">$how <a href="#$anchor">$header</a></p>"""
FACT_HTML = """<dt>$name</dt><dd>$value</dd>"""
NAV_LINK_HTML = """<a href="#$anchor">$name</a>"""
ROW_HTML = """<tr><th>$name</th><td>$value</td></tr>"""
MASKED_ROW_HTML = """<tr><th>$name</th><td class="masked">$value</td></tr>"""
FAILED_ROW_HTML = """<tr><th>$name</th><td class="failed">$value</td></tr>"""

TEXT_HTML = """<section id="text"><h2>Copy-paste text <small>as the log has it</small></h2>
<textarea id="plain" readonly rows="18" spellcheck="false">$text</textarea>
<p><button id="copy" type="button" hidden>Copy</button></p></section>
"""
TRACEBACK_HTML = """<section id="traceback"><h2>Traceback <small>most recent call last; \
click a frame for its source and local variables</small></h2>
$exceptions</section>"""
EXCEPTION_HTML = """<div class="exception" id="$anchor">
<h3><span class="type">$name</span>$colon<span class="mono">$message</span></h3>$notes$folded
$frames$syntax$group</div>"""
FOLDED_HTML = """<p class="folded">The same exception, from the same lines, was raised \
$count more $times, each while handling the one before: folded into this one.</p>"""
EARLIER_HTML = """<p class="folded">$count earlier chained exceptions are not shown.</p>"""
CHAIN_LINK_HTML = """<p class="chain">$text</p>"""
FRAME_HTML = """<details class="frame $kind" id="$anchor"$open>
<summary><span class="place">$place</span>$function$repeat$badge\
<code>$line</code></summary>
<pre class="source">$source</pre>$variables</details>
"""
FUNCTION_HTML = """ in <span class="function mono">$function</span>"""
PLACE_HTML = """<span class="dir">$directory</span>$name:$lineno"""
EDITOR_PLACE_HTML = """<a href="$href" title="Open in your editor">$place</a>"""
REPEAT_HTML = """<span class="repeat" title="the same line, again and again">\
&times; $count</span>"""
BADGE_HTML = """<span class="badge">$text</span>"""
SOURCE_LINE_HTML = """<span class="$kind"><i>$number</i>$code</span>"""
MARKED_HTML = """$before<mark>$marked</mark>$after"""
NO_SOURCE_HTML = """<span><i></i>(source not available)</span>"""
VARIABLES_HTML = """<div class="variables"><table>$rows</table></div>"""
LIBRARY_HTML = """<details class="library"><summary>$count library $frames \
<span class="mono">$modules</span></summary>
$body</details>
"""
OMITTED_HTML = """<p class="omitted">&hellip; $count frames not shown &hellip;</p>"""
GROUP_HTML = """<div class="group">$members$left_out</div>"""
MEMBER_HTML = """<div class="member"><h4>$number</h4>$chain</div>"""
LEFT_OUT_HTML = """<p class="omitted">and $count more exceptions</p>"""
NO_FRAMES_HTML = """<p class="empty">No frames of yours: it was raised in runserver.py \
or by the interpreter.</p>"""

REQUEST_HTML = """<section id="request"><h2>Request</h2>
<p><code>$request_line</code> from $client</p>
<p class="empty">$body</p>
$tables
<details><summary>$environ_title ($environ_count)</summary>
<table class="kv">$environ</table></details>
<p class="empty">Values of names containing API, TOKEN, KEY, SECRET, PASS, SIGNATURE, AUTH, \
SESSION or COOKIE are masked; so are those values where they appear in local variables.</p></section>"""
TABLE_HTML = """<h3>$title</h3><table class="kv">$rows</table>"""
EMPTY_TABLE_HTML = """<h3>$title</h3><p class="empty">none</p>"""

PLAIN_PAGE = """<!doctype html>
<html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<pre style="white-space:pre-wrap;overflow-wrap:anywhere">$text</pre></html>
"""

APP_ERROR_NOTE = "The application raised an exception; the server's log has the traceback."
NOT_RUNNING_NOTE = "The application is not running; the server's log says why."

# Live reload's script.  In a page it listens through a SharedWorker (this same
# script: one event stream for every tab), or on its own stream where there is
# none.  "hello ID" names the worker serving: another one means new code, so
# the page reloads; "css PATH" swaps that stylesheet in; "reload" reloads.
LIVERELOAD_JS = """\
(function () {
  "use strict";
  var SCRIPT = "$script", EVENTS = "$events";
  var RETRY = $retry, FAILURES = $failures, SLOW_RETRY = $slow_retry;

  function listen(on) {
    var failures = 0;
    function connect() {
      var source = new EventSource(EVENTS);
      source.onopen = function () { failures = 0; };
      ["hello", "css", "reload"].forEach(function (kind) {
        source.addEventListener(kind, function (event) { on(kind, event.data); });
      });
      source.onerror = function () {
        failures += 1;
        if (failures >= FAILURES || source.readyState === EventSource.CLOSED) {
          source.close();
          setTimeout(connect, failures >= FAILURES ? SLOW_RETRY : RETRY);
        }
      };
    }
    connect();
  }

  if (typeof document === "undefined") {
    var ports = [], worker = null;
    self.onconnect = function (event) {
      var port = event.ports[0];
      ports.push(port);
      port.onmessage = function (message) {
        var index = ports.indexOf(port);
        if (message.data === "bye" && index >= 0) ports.splice(index, 1);
        if (message.data === "back" && index < 0) ports.push(port);
      };
      if (worker !== null) port.postMessage(["hello", worker]);
    };
    listen(function (kind, data) {
      if (kind === "hello") worker = data;
      ports.forEach(function (port) { port.postMessage([kind, data]); });
    });
    return;
  }

  // The worker that served this page: a hello from another one means new code,
  // even when it came in between (the page would keep the old code otherwise).
  var serving = (document.currentScript && document.currentScript.dataset.worker) || null;
  function on(kind, data) {
    if (kind === "hello" && serving === null) serving = data;
    else if (kind === "hello" && data !== serving) location.reload();
    else if (kind === "reload") location.reload();
    else if (kind === "css") swap(data);
  }
  function swap(path) {
    var links = [].filter.call(document.querySelectorAll("link[rel~=stylesheet]"), function (link) {
      return link.href && new URL(link.href).origin === location.origin && !link.runserverOld;
    });
    var named = links.filter(function (link) { return new URL(link.href).pathname === path; });
    (named.length ? named : links).forEach(function (link) {
      var url = new URL(link.href), fresh = link.cloneNode();
      url.searchParams.set("livereload", Date.now());
      fresh.href = url.href;
      link.runserverOld = true;
      fresh.onload = fresh.onerror = function () { link.remove(); };
      link.after(fresh);
    });
  }
  var shared = null;
  try {
    shared = new SharedWorker(SCRIPT, {name: "runserver.py live reload"});
  } catch (error) {
    shared = null;
  }
  if (shared === null) {
    listen(on);
    return;
  }
  shared.onerror = function () { shared = null; listen(on); };
  shared.port.onmessage = function (message) { on(message.data[0], message.data[1]); };
  shared.port.start();
  addEventListener("pagehide", function () { if (shared) shared.port.postMessage("bye"); });
  addEventListener("pageshow", function (event) {
    if (shared && event.persisted) shared.port.postMessage("back");
  });
})();
"""
LIVERELOAD_TAG = '<script src="$script" data-worker="$worker" defer></script>'


def render_error(environ, report, note=APP_ERROR_NOTE, editor=None):
    """A 500 response's (content type, body): the report (None: only `note`),
    as the error page for a browser, as text for other clients."""
    if report is None:
        text = "500 Internal Server Error\n\n%s\n" % note
    else:
        text = "500 Internal Server Error\n\n%s%s" % (
            report.title + "\n\n" if report.title and report.chain else "",
            clip(report.text, PAGE_LIMIT // 4))
    if "text/html" not in environ.get("HTTP_ACCEPT", ""):
        return "text/plain; charset=utf-8", text.encode("utf-8", "replace")
    if report is None:
        page = fill(PLAIN_PAGE, title="500 Internal Server Error", text=text)
    else:
        page = error_page(report, environ, editor)
    return "text/html; charset=utf-8", page.encode("utf-8", "replace")


def error_page(report, environ, editor):
    """The error page, at most PAGE_LIMIT bytes: a huge traceback loses the source
    and variables of its collapsed frames, then everything but its text."""
    for detail in ("all", "focus"):
        page = error_page_html(report, environ, editor, detail)
        if len(page.encode("utf-8", "replace")) <= PAGE_LIMIT:
            return page
    return fill(PLAIN_PAGE, title=page_title(report), text=clip(report.text, PAGE_LIMIT // 8))


def page_title(report):
    """The page's <title>: the exception, else the report's title."""
    if not report.chain:
        return report.title
    final = report.chain[-1]
    return "%s: %s" % (final.name, final.message[:80]) if final.message else final.name


def error_page_html(report, environ, editor, detail):
    """The whole error page; `detail` is "all" or "focus" (only the frames
    shown open keep their source and variables)."""
    chain = report.chain
    sections = [name for name, shown in (("traceback", chain), ("request", environ),
                                          ("python", True), ("text", chain)) if shown]
    facts = []
    if environ:
        facts.append(("Request", "%s %s" % (environ.get("REQUEST_METHOD", ""),
                                            request_url(environ))))
    facts += [("Python", "%s %s" % (sys.implementation.name, sys.version.split()[0])),
              ("Executable", sys.executable),
              ("Time", time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(report.created)))]
    return fill(
        ERROR_PAGE, title=page_title(report), css=Html(ERROR_PAGE_CSS), js=Html(ERROR_PAGE_JS),
        server=SERVER_SOFTWARE, summary=summary_html(report, environ),
        facts=join(fill(FACT_HTML, name=name, value=value) for name, value in facts),
        links=join(fill(NAV_LINK_HTML, anchor=name, name=name.title()) for name in sections),
        traceback=fill(TRACEBACK_HTML, exceptions=chain_html(chain, "e", editor, detail))
        if chain else Html(""),
        request=request_html(environ) if environ else Html(""),
        python=rows_html([("Version", sys.version), ("Executable", sys.executable),
                          ("Process", os.getpid()), ("Working directory", os.getcwd())]),
        path=rows_html(enumerate(sys.path)),
        text=fill(TEXT_HTML, text=clip(report.text, PAGE_LIMIT // 8)) if chain else Html(""))


def summary_html(report, environ):
    """The page's top: what was raised, where, and what led to it."""
    title = fill(TITLE_HTML, title=report.title) if report.title else Html("")
    chain = report.chain
    if not chain:
        return fill(SUMMARY_HTML, title=Html(""), name=report.title, message="",
                    notes=Html(""), where="", chained=Html(""))
    final, anchor = chain[-1], "e%d" % len(chain)
    index = focus_index(final)
    if final.syntax:
        where = fill(SYNTAX_WHERE_HTML, anchor=anchor + "s",
                     place=place_html(final.syntax, None),
                     line=" ".join(text.strip() for number, text, current, mark
                                   in final.syntax.lines if current))
    elif index is not None:
        frame = final.frames[index]
        where = fill(WHERE_HTML, anchor="%sf%d" % (anchor, index), function=frame.function,
                     place=place_html(frame, None))
    else:
        where = Html("")
    chained = []
    if len(chain) > 1:      # the exception it came from, and the first of all
        chained.append(fill(CHAINED_HTML, anchor="e%d" % (len(chain) - 1),
                            how="Caused by" if chain[-2].link == "cause" else "While handling",
                            header=header_text(chain[-2])))
    if len(chain) > 2:
        chained.append(fill(CHAINED_HTML, anchor="e1", how="First of %d:" % len(chain),
                            header=header_text(chain[0])))
    return fill(SUMMARY_HTML, title=title, message=final.message,
                name=join(fill(NAME_PART_HTML, part=part)
                          for part in re.findall(r"[^.]+\.?|\.", final.name)),
                notes=join(fill(NOTE_HTML, note=note) for note in final.notes),
                where=where, chained=join(chained))


def header_text(info):
    """'Type: message' of one exception, for a line of the summary."""
    return "%s: %s" % (info.name, info.message[:200]) if info.message else info.name


def focus_index(info):
    """The frame to open: the innermost of the user's code, else the innermost;
    none when the exception is a SyntaxError, whose place is what to open."""
    if info.syntax or not info.frames:
        return None
    for index in range(len(info.frames) - 1, -1, -1):
        if not info.frames[index].library:
            return index
    return len(info.frames) - 1


def chain_html(chain, prefix, editor, detail):
    """A chain of exceptions, root cause first, with what links them."""
    parts = []
    for number, info in enumerate(chain, 1):
        if info.earlier:
            parts.append(fill(EARLIER_HTML, count=info.earlier))
        parts.append(exception_html(info, "%s%d" % (prefix, number), editor, detail))
        if info.link:
            parts.append(fill(CHAIN_LINK_HTML, text=CHAIN_LINKS[info.link]))
    return join(parts)


def exception_html(info, anchor, editor, detail):
    """One exception: its header and notes, its frames (library frames grouped,
    the innermost of the user's open), a SyntaxError's place, a group's members."""
    focus = focus_index(info)
    parts, library = [], []
    for index, frame in enumerate(info.frames or ()):
        if info.omitted and index == info.omitted[0]:
            parts.append(library_html(library))
            library = []
            parts.append(fill(OMITTED_HTML, count=info.omitted[1]))
        html = frame_html(frame, "%sf%d" % (anchor, index), editor, index == focus,
                          detail == "all" or index == focus)
        if frame.library and index != focus:
            library.append((frame, html))
        else:
            parts += [library_html(library), html]
            library = []
    parts.append(library_html(library))
    if info.frames == [] and not info.syntax:
        parts.append(Html(NO_FRAMES_HTML))
    syntax = frame_html(info.syntax, anchor + "s", editor, True, True) if info.syntax \
        else Html("")
    group = Html("")
    if info.group:
        members, left_out = info.group
        group = fill(GROUP_HTML, members=join(
            fill(MEMBER_HTML, number="%d of %d" % (number, len(members) + left_out),
                 chain=chain_html(member, "%sm%d" % (anchor, number), editor, detail))
            for number, member in enumerate(members, 1)),
            left_out=fill(LEFT_OUT_HTML, count=left_out) if left_out else Html(""))
    return fill(EXCEPTION_HTML, anchor=anchor, name=info.name,
                colon=": " if info.message else "", message=info.message,
                notes=join(fill(NOTE_HTML, note=note) for note in info.notes),
                folded=fill(FOLDED_HTML, count=info.folded,
                            times="times" if info.folded > 1 else "time")
                if info.folded else Html(""),
                frames=join(parts), syntax=syntax, group=group)


def library_html(frames):
    """Consecutive frames of libraries, collapsed into one line."""
    if not frames:
        return Html("")
    modules = []
    for frame, html in frames:
        module = frame.module.partition(".")[0] or os.path.basename(frame.filename)
        if module not in modules:
            modules.append(module)
    return fill(LIBRARY_HTML, count=len(frames),
                frames="frame" if len(frames) == 1 else "frames",
                modules=", ".join(modules), body=join(html for frame, html in frames))


def frame_html(frame, anchor, editor, focus, full):
    """One frame, open if it is the focus; without `full`, only its current line."""
    current = [text.strip() for number, text, is_current, mark in frame.lines if is_current]
    lines = []
    for number, text, is_current, mark in frame.lines:
        if not (full or is_current):
            continue
        code = fill(MARKED_HTML, before=text[:mark[0]], marked=text[mark[0]:mark[1]],
                    after=text[mark[1]:]) if mark else text
        lines.append(fill(SOURCE_LINE_HTML, kind="current" if is_current else "",
                          number=number, code=code))
    rows = [fill(FAILED_ROW_HTML if failed else ROW_HTML, name=name, value=value)
            for name, value, failed in frame.variables] if full else []
    return fill(FRAME_HTML, kind=("library" if frame.library else "user")
                + (" focus" if focus else ""), anchor=anchor,
                open=Html(" open") if focus else Html(""),
                place=place_html(frame, editor),
                function=fill(FUNCTION_HTML, function=frame.function) if frame.function
                else Html(""),
                repeat=fill(REPEAT_HTML, count=frame.repeat) if frame.repeat > 1 else Html(""),
                badge=fill(BADGE_HTML, text="syntax error" if not frame.function
                           else "raised here") if focus else Html(""),
                line=current[0] if current else "", source=join(lines) or Html(NO_SOURCE_HTML),
                variables=fill(VARIABLES_HTML, rows=join(rows)) if rows else Html(""))


def place_html(frame, editor):
    """file:line, the file relative to the working directory or site-packages;
    a link when an --editor URL template is set."""
    filename = frame.filename
    shown = filename
    cwd = os.path.join(os.getcwd(), "")
    if filename.startswith(cwd):
        shown = filename[len(cwd):]
    else:
        for marker in ("site-packages", "dist-packages"):
            if os.sep + marker + os.sep in filename:
                shown = filename.rpartition(os.sep + marker + os.sep)[2]
    directory, name = os.path.split(shown)
    place = fill(PLACE_HTML, directory=os.path.join(directory, "") if directory else "",
                 name=name, lineno=frame.lineno)
    if editor and not filename.startswith("<"):
        return fill(EDITOR_PLACE_HTML, href=editor_url(editor, filename, frame.lineno),
                    place=place)
    return place


def editor_url(template, path, line):
    """The --editor URL template filled for one file and line."""
    import urllib.parse
    return template.format(path=urllib.parse.quote(path, safe="/:\\"), line=line)


def rows_html(rows):
    """Table rows of (name, value) pairs."""
    return join(fill(ROW_HTML, name=name, value=value) for name, value in rows)


def request_html(environ):
    """The request: its line, headers, query parameters, cookies and environ,
    secrets masked; the body is never read for the page."""
    tables = request_tables(environ)
    html_tables = []
    for title, rows in tables[:-1]:
        html_tables.append(fill(TABLE_HTML, title=title, rows=join(
            fill(MASKED_ROW_HTML if value == MASK else ROW_HTML, name=name, value=value)
            for name, value in rows)) if rows else fill(EMPTY_TABLE_HTML, title=title))
    title, environ_rows = tables[-1]
    length = environ.get("CONTENT_LENGTH") or "0"
    body = "No body." if length == "0" else \
        "The body (%s bytes%s) was not read for this page." % (
            length, ", " + environ["CONTENT_TYPE"] if environ.get("CONTENT_TYPE") else "")
    secrets = request_secrets(environ)
    return fill(REQUEST_HTML, request_line=mask_secrets("%s %s %s" % (
                    environ.get("REQUEST_METHOD", ""), environ.get("REQUEST_URI", ""),
                    environ.get("SERVER_PROTOCOL", "")), secrets),
                client="%s:%s" % (environ.get("REMOTE_ADDR", "?"),
                                  environ.get("REMOTE_PORT", "?")),
                body=body, tables=join(html_tables), environ_title=title,
                environ_count=len(environ_rows),
                environ=join(fill(MASKED_ROW_HTML if value == MASK else ROW_HTML,
                                  name=name, value=value) for name, value in environ_rows))


def request_url(environ):
    """The URL the client asked for, secrets in its query masked."""
    target = environ.get("REQUEST_URI") or (environ.get("SCRIPT_NAME", "")
                                            + environ.get("PATH_INFO", ""))
    if not target.startswith("/"):
        return mask_secrets(target, request_secrets(environ))       # absolute form
    host = environ.get("HTTP_HOST") or "%s:%s" % (environ.get("SERVER_NAME", ""),
                                                  environ.get("SERVER_PORT", ""))
    return mask_secrets("%s://%s%s" % (environ.get("wsgi.url_scheme", "http"), host, target),
                        request_secrets(environ))


# ---- File serving -----------------------------------------------------------

class FileWrapper:
    """wsgi.file_wrapper: the server sends regular files with sendfile(), from the
    file's current position and never past the response's Content-Length."""

    def __init__(self, filelike, blksize=FILE_BLOCK_SIZE):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read = self.filelike.read
        while True:
            data = read(self.blksize)
            if not data:
                return
            yield data


class StaticFiles:
    """WSGI middleware: serve files under URL prefixes from directories (GET and
    HEAD, conditional and range requests); everything else goes to the app."""

    def __init__(self, app, mounts):
        self.app = app
        self.mounts = sorted(
            (("/" + prefix.strip("/") + "/").replace("//", "/"), os.path.realpath(directory))
            for prefix, directory in mounts)[::-1]

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        for prefix, root in self.mounts:
            if path.startswith(prefix) or path == prefix[:-1]:
                return self.serve(environ, start_response, prefix, root)
        return self.app(environ, start_response)

    def serve(self, environ, start_response, prefix, root):
        """Serve one request under `prefix` from the directory `root`."""
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return self.respond(start_response, "405 Method Not Allowed",
                                [("Allow", "GET, HEAD")], "Only GET and HEAD are allowed here.\n")
        raw = environ.get("REQUEST_URI", "").partition("?")[0].lower()
        path = environ["PATH_INFO"][len(prefix):]
        parts = [part for part in path.split("/") if part and part != "."]
        if "%2f" in raw or "%5c" in raw or any(
                part == ".." or "\\" in part or "\x00" in part for part in parts):
            return self.not_found(start_response)
        try:
            names = [part.encode("latin-1").decode("utf-8", "surrogateescape") for part in parts]
        except UnicodeEncodeError:
            return self.not_found(start_response)
        filename = os.path.join(root, *names)
        real = os.path.realpath(filename)
        if not is_inside(real, root):
            return self.not_found(start_response)       # a symlink that leaves the root
        if os.path.isdir(real):
            if not environ["PATH_INFO"].endswith("/"):
                # Built from the cleaned parts: "//host" would leave this server.
                import urllib.parse
                location = urllib.parse.quote(environ.get("SCRIPT_NAME", "") + prefix
                                              + "".join(part + "/" for part in parts),
                                              safe="/", encoding="latin-1")
                if environ.get("QUERY_STRING"):
                    location += "?" + environ["QUERY_STRING"]
                return self.respond(start_response, "301 Moved Permanently",
                                    [("Location", location)], "Moved to %s\n" % location)
            index = os.path.realpath(os.path.join(real, "index.html"))
            if not os.path.isfile(index):
                return self.listing(environ, start_response, real)
            if not is_inside(index, root):
                return self.not_found(start_response)   # index.html links out of the root
            real = index
        try:
            file = open(real, "rb")
        except OSError:
            return self.not_found(start_response)
        try:
            return self.send(environ, start_response, file, real)
        except BaseException:
            file.close()
            raise

    def send(self, environ, start_response, file, filename):
        """Answer with the file, a 304, a 206 range, or a 416."""
        import mimetypes
        stat = os.fstat(file.fileno())
        if not (stat.st_mode & 0o170000 == 0o100000):
            file.close()
            return self.not_found(start_response)
        size = stat.st_size
        etag = '"%x-%x-%x"' % (stat.st_mtime_ns, size, stat.st_ino)
        content_type, encoding = mimetypes.guess_type(filename)
        if content_type is None or encoding is not None:
            content_type = "application/octet-stream"
        elif content_type.startswith("text/") or content_type in (
                "application/javascript", "application/json", "image/svg+xml"):
            content_type += "; charset=utf-8"
        headers = [("Content-Type", content_type),
                   ("Last-Modified", http_date(stat.st_mtime)), ("ETag", etag),
                   ("Cache-Control", "no-cache"), ("Accept-Ranges", "bytes")]
        if not_modified(environ, etag, stat.st_mtime):
            file.close()
            start_response("304 Not Modified", headers[1:4])
            return []
        start, end = 0, size
        status = "200 OK"
        byte_range = environ.get("HTTP_RANGE")
        if byte_range and environ["REQUEST_METHOD"] == "GET" \
                and if_range_matches(environ, etag, stat.st_mtime):
            parsed = parse_range(byte_range, size)
            if parsed == "unsatisfiable":
                file.close()
                return self.respond(start_response, "416 Range Not Satisfiable",
                                    [("Content-Range", "bytes */%d" % size)],
                                    "Range not satisfiable for a file of %d bytes.\n" % size)
            if parsed is not None:
                start, end = parsed
                status = "206 Partial Content"
                headers.append(("Content-Range", "bytes %d-%d/%d" % (start, end - 1, size)))
        headers.append(("Content-Length", str(end - start)))
        file.seek(start)
        start_response(status, headers)
        return environ.get("wsgi.file_wrapper", FileWrapper)(file)

    def listing(self, environ, start_response, directory):
        """A plain HTML list of a directory without index.html."""
        import html
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return self.not_found(start_response)
        title = html.escape(environ["PATH_INFO"])
        import urllib.parse
        items = []
        for name in names:
            shown = name + "/" if os.path.isdir(os.path.join(directory, name)) else name
            href = urllib.parse.quote(shown, errors="surrogateescape")
            items.append('<li><a href="%s">%s</a></li>'
                         % (href, html.escape(shown.encode("utf-8", "surrogateescape")
                                              .decode("utf-8", "replace"))))
        page = ("<!doctype html><meta charset=utf-8><title>Index of %s</title>"
                "<h1>Index of %s</h1><ul>%s</ul>\n" % (title, title, "".join(items)))
        return self.respond(start_response, "200 OK", [("Cache-Control", "no-cache")], page,
                            "text/html; charset=utf-8")

    def not_found(self, start_response):
        return self.respond(start_response, "404 Not Found", [], "Not Found\n")

    @staticmethod
    def respond(start_response, status, headers, text, content_type="text/plain; charset=utf-8"):
        body = text.encode("utf-8", "surrogateescape")
        start_response(status, headers + [("Content-Type", content_type),
                                          ("Content-Length", str(len(body)))])
        return [body]


class RootPath:
    """WSGI middleware: the app mounted under a URL path, as behind a proxy
    that forwards /app/... to it (--root-path).  A request below the path gets
    it as SCRIPT_NAME and the rest as PATH_INFO; any other, a 404 that says
    where the app is."""

    def __init__(self, app, root_path):
        self.app = app
        self.root_path = root_path.encode("utf-8").decode("latin-1")     # as PATH_INFO has it

    def __call__(self, environ, start_response):
        path, root = environ.get("PATH_INFO", ""), self.root_path
        if path == root or path.startswith(root + "/"):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + root
            environ["PATH_INFO"] = path[len(root):]
            return self.app(environ, start_response)
        body = ("404 Not Found: this server serves its app under %s/ (--root-path)\n"
                % root).encode("latin-1")
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(body)))])
        return [body]


def is_inside(path, root):
    """Whether a resolved path is the directory `root` or lies under it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def parse_http_date(value):
    """Seconds since the epoch for an HTTP date, or None if it is not one."""
    from email.utils import parsedate_to_datetime
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def not_modified(environ, etag, mtime):
    """Whether If-None-Match (first) or If-Modified-Since allows a 304."""
    none_match = environ.get("HTTP_IF_NONE_MATCH")
    if none_match is not None:
        tags = [tag.strip() for tag in none_match.split(",")]
        return "*" in tags or etag in tags or ("W/" + etag) in tags
    since = environ.get("HTTP_IF_MODIFIED_SINCE")
    if since is not None:
        timestamp = parse_http_date(since)
        return timestamp is not None and int(mtime) <= timestamp
    return False


def if_range_matches(environ, etag, mtime):
    """Whether a Range may be honoured under If-Range (a strong ETag or a date)."""
    condition = environ.get("HTTP_IF_RANGE")
    if condition is None:
        return True
    condition = condition.strip()
    if condition.startswith('"'):
        return condition == etag
    timestamp = parse_http_date(condition)
    return timestamp is not None and int(mtime) == timestamp


def parse_range(value, size):
    """(start, end) for a single satisfiable `bytes=` range, "unsatisfiable",
    or None when the range is to be ignored (bad syntax, several ranges)."""
    match = re.fullmatch(r"bytes=[ \t]*([0-9]{0,18})-([0-9]{0,18})[ \t]*", value.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:                                   # suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(size - length, 0), size
    start = int(first)
    end = size if not last else int(last) + 1
    if last and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size)


# ---- Live reload ---------------------------------------------------------------
# A page a browser opens gets LIVERELOAD_TAG (ScriptInjector); its script
# listens on an event stream that WSGIRequestHandler.stream_events() serves,
# one thread per stream.  Streams are not requests in flight: a stop ends them
# at once (close_idle_and_wait()), and the page reconnects to the next worker.

PAGE_END = re.compile(rb"</(?:head|body)[\t\n\f\r />]", re.IGNORECASE)
PAGE_END_STARTS = (b"</head", b"</body")    # what a chunk's last bytes may begin


def is_page_request(environ):
    """Whether a browser asked for a page to show (every current browser says so)."""
    return environ.get("HTTP_SEC_FETCH_DEST") == "document" \
        and environ["REQUEST_METHOD"] != "HEAD"


class LiveReload:
    """The live-reload side of one server: its id, its script, and the event
    streams open to it; broadcast() tells them all, end_streams() ends them."""

    def __init__(self):
        self.id = "%d-%d" % (os.getpid(), time.time_ns())      # another one means new code
        self.script = fill(LIVERELOAD_JS, script=LIVERELOAD_SCRIPT, events=LIVERELOAD_EVENTS,
                           retry=LIVERELOAD_RETRY, failures=LIVERELOAD_FAILURES,
                           slow_retry=LIVERELOAD_SLOW_RETRY).encode()
        self.tag = fill(LIVERELOAD_TAG, script=LIVERELOAD_SCRIPT, worker=self.id).encode()
        self.greeting = b"retry: %d\nevent: hello\ndata: %s\n\n" % (
            LIVERELOAD_RETRY, self.id.encode())
        self.lock = threading.Lock()
        self.streams = set()

    def open_stream(self, server):
        """A new EventStream, or None if the server is stopping."""
        with self.lock:         # end_streams() comes after `stopping` is set: none is missed
            if server.stopping:
                return None
            stream = EventStream()
            self.streams.add(stream)
            return stream

    def close_stream(self, stream):
        with self.lock:
            self.streams.discard(stream)
        stream.close()

    def broadcast(self, kind, data=""):
        """Send one event to every open stream."""
        message = b"event: %s\ndata: %s\n\n" % (kind.encode(), data.encode("utf-8"))
        with self.lock:
            for stream in self.streams:
                stream.put(message)

    def end_streams(self):
        with self.lock:
            for stream in self.streams:
                stream.put(None)


class EventStream:
    """What one event stream is still to send, and a socket pair that wakes its thread."""

    def __init__(self):
        self.messages = collections.deque()
        self.wakeup, self.waker = socket.socketpair()
        self.waker.setblocking(False)

    def put(self, message):
        """Queue a message (None ends the stream) and wake the stream's thread."""
        self.messages.append(message)
        try:
            self.waker.send(b"\0")
        except OSError:                 # full: a wake-up is pending anyway
            pass

    def take(self):
        """The queued messages as bytes, or None if the stream must end."""
        try:
            self.wakeup.recv(512)
        except OSError:
            pass
        messages = []
        while self.messages:
            message = self.messages.popleft()
            if message is None:
                return None
            messages.append(message)
        return b"".join(messages)

    def close(self):
        self.wakeup.close()
        self.waker.close()


class ScriptInjector:
    """WSGI middleware for one response to a page request: LIVERELOAD_TAG goes
    before the first </head> or </body>, else at the end, in an HTML page
    (200 or an error status) that is neither Content-Encoded nor a download
    (Content-Disposition: attachment).  Content-Length
    grows by the tag's length; a streamed body keeps streaming.  ETag and
    Last-Modified go: they name the app's bytes, and a 304 would bring back
    a copy with the tag of a worker gone (the page would reload forever)."""

    def __init__(self, app, tag):
        self.app, self.tag = app, tag
        self.active = None              # None until start_response(): then whether to insert
        self.held = b""                 # a chunk's end that may begin </head> or </body>
        self.done = False

    def __call__(self, environ, start_response):
        self.start_response = start_response
        result = self.app(environ, self.start)
        if self.active is False:
            return result                       # untouched: a FileWrapper stays one
        if self.active and type(result) is list and all(type(data) is bytes for data in result):
            return [self.insert(b"".join(result)) + self.finish()]
        self.result = result
        return self                     # iterated by the server, closed by it

    def start(self, status, headers, exc_info=None):
        """start_response() for the app: decide, and correct Content-Length."""
        self.active = self.done = False
        self.held = b""
        if type(status) is str and status[:3].isdigit() \
                and (status[:3] == "200" or status[:3] >= "400") and type(headers) is list:
            names = [str(item[0]).lower() if type(item) is tuple and item else ""
                     for item in headers]
            content_type = headers[names.index("content-type")][1] \
                if "content-type" in names else ""
            disposition = headers[names.index("content-disposition")][1] \
                if "content-disposition" in names else ""
            self.active = "content-encoding" not in names and isinstance(content_type, str) \
                and content_type.split(";")[0].strip().lower() == "text/html" \
                and not str(disposition).strip().lower().startswith("attachment")   # a download
            if self.active and "content-length" in names:
                index = names.index("content-length")
                length = headers[index][1]
                if isinstance(length, str) and length.strip().isdigit():
                    headers = list(headers)
                    headers[index] = (headers[index][0], str(int(length) + len(self.tag)))
                else:
                    self.active = False         # the server refuses it anyway
            if self.active:
                headers = [item for item, name in zip(headers, names)
                           if name not in ("etag", "last-modified")]
        write = self.start_response(status, headers, exc_info)
        return lambda data: write(self.insert(data))

    def insert(self, data):
        """Body bytes with the tag inserted, if this is where it goes."""
        if not self.active or self.done or type(data) is not bytes:
            return data
        data = self.held + data
        self.held = b""
        match = PAGE_END.search(data)
        if match is not None:
            self.done = True
            return data[:match.start()] + self.tag + data[match.start():]
        tail = data[-len(PAGE_END_STARTS[0]):].lower()
        for start in range(len(tail)):
            if any(end.startswith(tail[start:]) for end in PAGE_END_STARTS):
                self.held = data[len(data) - len(tail) + start:]
                return data[:len(data) - len(self.held)]
        return data

    def finish(self):
        """What is left once the body ended: the held bytes, and the tag if not inserted."""
        if not self.active or self.done:
            return b""
        self.done = True
        held, self.held = self.held, b""
        return held + self.tag

    def __iter__(self):
        for data in self.result:
            yield self.insert(data)
        rest = self.finish()
        if rest:
            yield rest

    def close(self):
        close = getattr(self.result, "close", None)
        if close is not None:
            close()


def with_script(body, tag):
    """A whole HTML page with the live-reload tag inserted as ScriptInjector does."""
    injector = ScriptInjector(None, tag)
    injector.active = True
    return injector.insert(body) + injector.finish()


def start_static_watcher(server, static, interval):
    """In a worker: poll the --static directories in a thread; a changed
    stylesheet is swapped into the open pages, any other change reloads them.
    Stylesheets are looked at every HOT_POLL_INTERVAL, everything every `interval`
    (or less often, if a look takes more than POLL_CPU_BUDGET of that time)."""
    roots = [(("/" + prefix.strip("/") + "/").replace("//", "/"), os.path.realpath(directory))
             for prefix, directory in static]

    def scan():
        files = {}
        for prefix, root in roots:
            for top, directories, names in os.walk(root):
                directories[:] = [name for name in directories if not ignored_name(name)]
                for name in names:
                    if not ignored_name(name):
                        path = os.path.join(top, name)
                        files[path] = prefix + os.path.relpath(path, root).replace(os.sep, "/")
        return files

    files = scan()
    snapshot = {path: stat_key(path) for path in files}     # before the banner: no save missed

    def watch():
        nonlocal files
        new = set()         # first seen at the last scan: counted if still there at the next
        next_scan = time.monotonic() + interval     # (an editor's temporary file is not)
        while True:
            time.sleep(HOT_POLL_INTERVAL)
            if time.monotonic() >= next_scan:
                cpu = time.thread_time()
                files = scan()
                took = time.thread_time() - cpu         # a big tree: less often (POLL_CPU_BUDGET)
                next_scan = time.monotonic() + max(interval, took / POLL_CPU_BUDGET)
                looked_at = [path for path in files if path in snapshot or path in new]
                new = {path for path in files if path not in snapshot and path not in new}
            else:
                looked_at = [path for path in snapshot if path.endswith(".css")]
            changed = []
            for path in looked_at:
                key = stat_key(path)
                if key is not None and snapshot.get(path) != key:     # removed: at the next scan
                    snapshot[path] = key
                    changed.append(path)
            gone = [path for path in snapshot if path not in files]
            for path in gone:
                del snapshot[path]
            if gone or any(not path.endswith(".css") for path in changed):
                logger.debug("Static files changed: the pages reload.")
                server.livereload.broadcast("reload")
            else:
                for path in changed:
                    logger.debug("%s changed: swapped in the pages.", files[path])
                    server.livereload.broadcast("css", files[path])
    threading.Thread(target=watch, name="runserver-static-watcher", daemon=True).start()


def ignored_name(name):
    """Whether a file or directory name is one the reloader never watches (RELOAD_IGNORE)."""
    return any(fnmatch.fnmatch(name, pattern) for pattern in RELOAD_IGNORE)


# ---- Server classes -----------------------------------------------------------

class Poller:
    """The event loop's wait for readable sockets.  arm() puts a connection
    in `waiting`; claim() takes it out for exactly one thread, so the loop and
    a thread finishing a long request never serve it both.

    Linux: epoll, level-triggered, a connection registered until it closes:
    a keep-alive request costs no system call besides epoll_wait, recv and
    send.  Only when poll() reports a connection that another thread is
    serving (more bytes came, or the client reset it, while a long request
    ran) is it unregistered until it is armed again: switched off with
    epoll.modify(fd, 0) it would still report EPOLLERR and EPOLLHUP, and the
    loop would spin.  Elsewhere: a selector, the connection unregistered
    while it is served."""

    use_epoll = hasattr(select, "epoll")

    def __init__(self, fds):
        self.use_epoll = self.use_epoll     # fixed for this poller's life
        self.capacity = SELECT_MAX_SOCKETS if sys.platform == "win32" else None
        self.waiting = {}                   # fd -> handler, armed and not yet claimed
        self.next_deadline = float("inf")   # the earliest handler.deadline among them
        self.lock = threading.Lock()
        if self.use_epoll:
            self.epoll = select.epoll()
            self.registered = set()         # fds in the epoll set
            for fd in fds:
                self.epoll.register(fd, select.EPOLLIN)
        else:
            self.selector = selectors.DefaultSelector()
            for fd in fds:
                self.selector.register(fd, selectors.EVENT_READ)

    def full(self):
        """Whether another connection would be more than select() takes (Windows)."""
        return self.capacity is not None and len(self.waiting) >= self.capacity

    def poll(self, timeout):
        """The ready file descriptors; timeout None waits for ever."""
        if self.use_epoll:
            return [fd for fd, _ in self.epoll.poll(-1 if timeout is None else timeout)]
        return [key.fd for key, _ in self.selector.select(timeout)]

    def arm(self, fd, handler):
        """Report fd once it is readable; True if handler.deadline is now the earliest."""
        with self.lock:
            self.waiting[fd] = handler
            earliest = handler.deadline < self.next_deadline
            if earliest:
                self.next_deadline = handler.deadline
            if not self.use_epoll:
                self.selector.register(fd, selectors.EVENT_READ)
            elif fd not in self.registered:
                self.epoll.register(fd, select.EPOLLIN)
                self.registered.add(fd)
        return earliest

    def claim(self, fd):
        """The armed connection on fd, now this thread's; None if another took it."""
        with self.lock:
            handler = self.waiting.pop(fd, None)
            if not self.use_epoll:
                if handler is not None:
                    self.selector.unregister(fd)
            elif handler is None and fd in self.registered:
                self.epoll.unregister(fd)       # being served: quiet until armed again
                self.registered.discard(fd)
        return handler

    def claim_expired(self, now):
        """Claim every connection whose deadline has passed."""
        expired = []
        with self.lock:
            self.next_deadline = float("inf")
            for fd, handler in list(self.waiting.items()):
                if handler.deadline <= now:
                    del self.waiting[fd]
                    if not self.use_epoll:
                        self.selector.unregister(fd)
                    expired.append(handler)
                elif handler.deadline < self.next_deadline:
                    self.next_deadline = handler.deadline
        return expired

    def forget(self, fd):
        """Before a claimed connection's socket is closed (its number is reused)."""
        if self.use_epoll:
            with self.lock:
                if fd in self.registered:
                    self.registered.discard(fd)
                    try:
                        self.epoll.unregister(fd)
                    except (OSError, ValueError):   # closed by server_close()
                        pass

    def close(self):
        with self.lock:
            (self.epoll if self.use_epoll else self.selector).close()


class LoopThreadingMixIn(socketserver.ThreadingMixIn):
    """Threads for WSGIServer's event loop, leader/follower style.

    One pool thread runs the loop and serves each request in place: no
    hand-off between threads, which costs more than the request itself when
    the GIL is contended.  A watchdog (the thread that called serve_forever())
    sees when a request has run PROMOTE_AFTER seconds; another thread then
    takes the loop over, and the first one finishes its request, hands the
    connection back to the loop and waits as a spare.  So a slow app, a slow
    upload or a stream ties up one thread, never the others' requests.

    Once a request ran long, for HAND_OFF_PERIOD the loop hands the requests
    of new connections, and of those whose last request ran long, to pool
    threads instead: a burst of slow requests then holds the others up for
    one promotion, not one per slow request.  The loop never waits for a
    thread to start: it queues the request, and the watchdog starts threads
    while queued tasks outnumber the spare ones.

    TLS connections get socketserver's thread per connection (its
    process_request), queued the same way.  Spare threads wait
    SPARE_THREAD_TIMEOUT seconds for work, then exit.  When no thread can be
    started, the loop serves every request in place; if it was being taken
    over, the thread that finishes its task first runs it.
    """

    def run_loop(self):
        self.promote()
        self.serving.set()
        self.watch()
        with self._loop_changed:        # no thread polls once serve_forever() returns
            self._loop_changed.wait_for(lambda: not (self._leaders and self._polling), 1.0)
        self.grow_pool()                # requests queued meanwhile still get their thread

    def promote(self, busy_since=None):
        """Make a spare thread, or a new one, run the loop from now on; with
        busy_since, only if the loop's thread is still on that request (which
        then ran long: requests are handed off for a while)."""
        with self._busy_lock:
            if busy_since is not None and self._busy_since is not busy_since:
                return                  # it finished meanwhile
            self._generation = generation = next(self._generations)
            self._busy_since = None
        if busy_since is not None:
            self._hand_off_until = time.monotonic() + HAND_OFF_PERIOD
        if self._stop_requested:        # a stop came first: its run is over too
            return
        try:
            self.start_task(generation)
        except RuntimeError as exc:
            # The generation stays: going back to the previous one would race
            # with its thread leaving the loop, and with a stop.
            self._unled = generation
            self.wake(self._watchdog_wakeup)            # it retries
            logger.error("Cannot start a thread to take the event loop over (%s); "
                         "it waits for a thread to finish its request.", exc)

    def take_unled_loop(self):
        """The loop's generation that no thread could be started for, now the caller's."""
        with self._busy_lock:
            generation, self._unled = self._unled, None
        return generation

    def loop_lost(self):
        logger.error("The event loop's thread stopped; another one takes over")
        self.promote()

    def process_request(self, request, client_address):
        self.queue_task((request, client_address))

    def serve_connection(self, handler, generation):
        if self._hand_off_until and self._hand_off_until > time.monotonic() \
                and (handler.ran_long or not handler.requests):
            self.queue_task(handler)
        else:
            super().serve_connection(handler, generation)

    def start_task(self, task):
        """Give a task to a spare thread, or start one for it."""
        with self.spare_threads_lock:
            if self.spare_threads > 0:
                self.spare_threads -= 1
                self.handoff.put(task)
                return
        threading.Thread(target=self.pool_thread, args=(task,),
                         daemon=self.daemon_threads).start()

    def queue_task(self, task):
        """Give a task to the next spare thread, without waiting for one to
        start: spare_threads then goes below zero, and the watchdog starts some."""
        with self.spare_threads_lock:
            self.spare_threads -= 1
            self.handoff.put(task)
            short = self.spare_threads < 0
        if short:
            self.wake(self._watchdog_wakeup)

    def grow_pool(self):
        """Start threads until every queued task has one (in the watchdog)."""
        while self.spare_threads < 0:
            with self.spare_threads_lock:
                self.spare_threads += 1         # the new thread's, as it begins spare
            try:
                threading.Thread(target=self.pool_thread, args=(None,),
                                 daemon=self.daemon_threads).start()
            except RuntimeError as exc:
                with self.spare_threads_lock:
                    self.spare_threads -= 1
                if self._hand_off_until:
                    logger.error("Cannot start a thread for a request (%s); the event "
                                 "loop serves requests in place meanwhile.", exc)
                self._hand_off_until = 0.0
                self.unqueue_connections()
                return

    def unqueue_connections(self):
        """No thread could be started: give the queued connections back to the
        loop, which serves them in place (TLS ones wait for a thread)."""
        others = []
        with self.spare_threads_lock:
            while self.spare_threads < 0:
                try:
                    task = self.handoff.get_nowait()
                except queue.Empty:
                    break
                self.spare_threads += 1
                if isinstance(task, WSGIRequestHandler):
                    self.wait_for_bytes(task, False)    # its bytes are still unread
                else:
                    others.append(task)
            for task in others:
                self.spare_threads -= 1
                self.handoff.put(task)

    def pool_thread(self, task):
        """Run the loop (task is its generation), serve a request the loop
        handed off (a WSGIRequestHandler) or one connection (task is
        (request, client_address)); then wait for the next task.  A thread
        started with task None is already counted as spare."""
        while True:
            if task is not None:
                if type(task) is int:
                    self.lead(task)
                elif type(task) is tuple:
                    self.process_request_thread(*task)
                else:
                    self.serve_handed_off(task)
                if self._unled is not None:     # a loop no thread could be started for
                    task = self.take_unled_loop()
                    if task is not None:
                        continue
                with self.spare_threads_lock:
                    self.spare_threads += 1
            try:
                task = self.handoff.get(timeout=SPARE_THREAD_TIMEOUT)
            except queue.Empty:
                with self.spare_threads_lock:
                    if self.handoff.empty():        # else a task was just handed over
                        self.spare_threads -= 1
                        return
                task = self.handoff.get()

    def serve_handed_off(self, handler):
        """Serve the requests that arrived on a connection the loop handed
        off, then give the connection back to the loop."""
        started = time.monotonic()
        try:
            keep = handler.serve_ready()
        except Exception:
            self.handle_error(handler.request, handler.client_address)
            keep = False
        except BaseException:           # SystemExit in the app, say: this thread ends
            self.close_connection(handler)
            raise
        handler.ran_long = time.monotonic() - started >= PROMOTE_AFTER
        if handler.ran_long:
            self._hand_off_until = time.monotonic() + HAND_OFF_PERIOD
        if keep:
            self.wait_for_bytes(handler, False)
        else:
            self.close_connection(handler)

    def watch(self):
        """Until request_stop(): promote another thread when the loop's thread
        has been busy with one request for PROMOTE_AFTER seconds, start the
        threads queued tasks wait for, and retry a promotion that could not
        start a thread.  Ticks only while requests come or wait; otherwise it
        sleeps until the loop takes one or queues one."""
        quiet_ticks = 0
        while not self._stop_requested:
            if self.spare_threads < 0:
                self.grow_pool()
            busy_since = self._busy_since
            if self._unled is not None:
                quiet_ticks = 0
                self.retry_unled_loop()
            elif busy_since is None and self.spare_threads >= 0:
                quiet_ticks += 1
            elif busy_since is not None:
                quiet_ticks = 0
                if time.monotonic() - busy_since >= PROMOTE_AFTER:
                    self.promote(busy_since)
            timeout = WATCH_INTERVAL
            if quiet_ticks >= WATCH_IDLE_TICKS:
                self._watchdog_asleep = True
                idle = self._busy_since is None and self.spare_threads >= 0 \
                    and not self._stop_requested
                timeout = None if idle else 0
            # A wake-up socket, not a sleep: request_stop() and the loop's thread wake it.
            if select.select([self._watchdog_wake], [], [], timeout)[0]:
                try:
                    self._watchdog_wake.recv(512)
                except OSError:                 # closed by server_close()
                    return
            if self._watchdog_asleep:
                self._watchdog_asleep = False
                quiet_ticks = 0

    def retry_unled_loop(self):
        """Try again to start a thread for the loop that none could be started for."""
        generation = self.take_unled_loop()
        if generation is not None and generation == self._generation:
            try:
                self.start_task(generation)
            except RuntimeError:
                self._unled = generation


class WSGIServer(socketserver.TCPServer):
    """A TCP server serving its connections with WSGIRequestHandler.

    serve_forever() runs an event loop: it accepts connections, waits for
    their requests (keep-alive connections cost no thread while idle) and
    serves each request as it arrives.  On its own the server is single
    threaded; make_server() composes it with LoopThreadingMixIn so that a
    long request does not hold up the others.  Besides the socketserver hooks,
    request_stop() and close_idle_and_wait() give a graceful stop;
    serve_forever() wakes at once, with no polling interval.
    """

    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    owns_socket_file = False

    def __init__(self, server_address, app, *, handler_class=WSGIRequestHandler,
                 ipv6=False, listen_socket=None, ssl_context=None, limits=None,
                 quiet=False, debug=False, allowed_hosts=None, editor=None,
                 proxy_headers=False, forwarded_allow_ips=None, livereload=False):
        if ipv6:
            self.address_family = socket.AF_INET6
        self.app = app
        self.ssl_context = ssl_context
        self.limits = limits or DEFAULT_LIMITS
        self.quiet = quiet
        self.debug = debug
        self.editor = editor                        # --editor: a URL template for file:line
        self.livereload = LiveReload() if livereload else None
        self.proxy_trust = ProxyTrust(DEFAULT_FORWARDED_ALLOW_IPS if forwarded_allow_ips is None
                                      else forwarded_allow_ips) if proxy_headers else None
        # The access log names each client once others than this machine's can connect.
        self.log_clients = proxy_headers or (isinstance(server_address, tuple)
                                             and not is_loopback(server_address[0]))
        self.stopping = False
        self.multithread = isinstance(self, socketserver.ThreadingMixIn)
        self.spare_threads = 0                      # for LoopThreadingMixIn
        self.spare_threads_lock = threading.Lock()
        self.handoff = queue.SimpleQueue()
        self._generations = itertools.count(1)
        self._generation = 0            # the loop's current run; a thread whose run is over stops
        self._busy_since = None         # when the loop's thread began its current request
        self._busy_lock = threading.Lock()
        self._unled = None              # a generation no thread could be started for
        self._hand_off_until = 0.0      # until then the loop hands requests to threads
        self._watchdog_wake, self._watchdog_wakeup = wakeup_sockets()
        self._watchdog_asleep = False
        self._leaders = 0               # threads inside lead()
        self._polling = False           # whether the loop's thread waits in poll()
        self._loop_changed = threading.Condition()
        self._poller = None
        self._wakeup_read, self._wakeup_write = wakeup_sockets()
        self._wakes_on_signals = False
        self._ready = collections.deque()           # file descriptors polled, not yet served
        if listen_socket is None:
            super().__init__(server_address, handler_class)
        else:                           # a reloader worker inherits a bound socket
            self.address_family = listen_socket.family
            super().__init__(server_address, handler_class, bind_and_activate=False)
            self.socket.close()
            self.socket = listen_socket
            self.server_address = listen_socket.getsockname()
        self.socket.setblocking(False)
        self.allowed_hosts = allowed_hosts if allowed_hosts is not None \
            else default_allowed_hosts(self)
        self._hosts_allowed = set()     # short Host values allowed; as HOSTS_CHECKED, bounded
        self._connections = set()
        self._accepted = 0              # connections accepted and not yet shut down
        self._out_of_descriptors = False    # accept() could not take one more: logged once
        self._connections_changed = threading.Condition()
        self._stop_requested = False
        self._loop_done = threading.Event()
        self._loop_done.set()
        self.base_environ = self.make_base_environ()
        self.serving = threading.Event()    # set once serve_forever() has started its loop
        self._poller = Poller((self.socket.fileno(), self._wakeup_read.fileno()))
        # The event loop serves plain connections with WSGIRequestHandler and
        # subclasses that keep its handle(); others get socketserver's way.
        self._loop_handlers = self.ssl_context is None \
            and issubclass(self.RequestHandlerClass, WSGIRequestHandler) \
            and self.RequestHandlerClass.handle is WSGIRequestHandler.handle

    def server_bind(self):
        """Bind, accepting IPv4 too on '::' where the system allows (dual stack)."""
        if self.address_family == socket.AF_INET6 and self.server_address[0] in ("::", ""):
            try:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:
                pass
        super().server_bind()

    @property
    def server_port(self):
        return self.server_address[1] if isinstance(self.server_address, tuple) else None

    def make_base_environ(self):
        """The environ keys that are the same for every request."""
        if isinstance(self.server_address, tuple):
            name, port = self.server_address[0], str(self.server_address[1])
        else:
            name, port = "localhost", "443" if self.ssl_context else "80"
        return {
            "SERVER_NAME": name, "SERVER_PORT": port, "SCRIPT_NAME": "",
            "SERVER_SOFTWARE": SERVER_SOFTWARE, "GATEWAY_INTERFACE": "CGI/1.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self.ssl_context else "http",
            "wsgi.errors": sys.stderr, "wsgi.multithread": self.multithread,
            "wsgi.multiprocess": False, "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper, "wsgi.input_terminated": True,
        }

    def serve_forever(self, poll_interval=None):
        """Accept and serve connections until request_stop() or shutdown() is
        called (also if that came before); it can then be called again."""
        self._loop_done.clear()
        self.stopping = False
        try:
            self.run_loop()
        finally:
            self._generation = next(self._generations)     # no thread runs the loop now
            self._stop_requested = False
            self.serving.clear()
            self._loop_done.set()

    def run_loop(self):
        """Run the event loop in this thread (LoopThreadingMixIn uses a pool)."""
        self.serving.set()
        self.lead(self._generation)

    def lead(self, generation):
        """The event loop: wait for connections and requests and serve them,
        until request_stop(), or until another thread took the loop over
        (LoopThreadingMixIn) while this one was busy with a request."""
        with self._loop_changed:
            self._leaders += 1
        try:
            self.run_events(generation)
        finally:
            with self._loop_changed:
                self._leaders -= 1
                self._loop_changed.notify_all()
            if self._generation == generation and not self._stop_requested:
                self.loop_lost()

    def loop_lost(self):
        """The loop's thread died of an exception (LoopThreadingMixIn replaces it)."""

    def run_events(self, generation):
        poller = self._poller
        listener, wakeup = self.socket.fileno(), self._wakeup_read.fileno()
        ready = self._ready         # shared: a thread taking the loop over serves what is left
        while not self._stop_requested and self._generation == generation:
            try:
                fd = ready.popleft()
            except IndexError:
                if time.monotonic() >= poller.next_deadline:
                    self.expire_connections(generation)
                timeout = poller.next_deadline - time.monotonic()
                self._polling = True
                try:
                    ready.extend(poller.poll(None if timeout == float("inf") else max(timeout, 0)))
                except (OSError, ValueError):   # closed by server_close()
                    return
                finally:
                    self._polling = False
                if ready and self._generation != generation:
                    self.wake_loop()            # the thread that runs the loop now serves them
                continue
            if fd == wakeup:
                try:
                    self._wakeup_read.recv(512)
                except OSError:                 # another thread read it, or server_close()
                    pass
                continue
            try:
                if fd == listener:
                    self.accept_connections(generation)
                else:
                    handler = poller.claim(fd)
                    if handler is not None:
                        self.serve_connection(handler, generation)
            except Exception:                   # a bug: log it, keep the loop alive
                logger.error("Internal error in the event loop", exc_info=True)

    def expire_connections(self, generation):
        """Close the connections whose deadline passed (a 408 if a head was coming)."""
        self.timed(generation)
        try:
            for handler in self._poller.claim_expired(time.monotonic()):
                try:
                    handler.expire()
                finally:
                    self.close_connection(handler)
        except Exception:
            logger.error("Internal error in the event loop", exc_info=True)
        finally:
            self.untimed(generation)

    def accept_connections(self, generation):
        """Accept what waits in the backlog (several per wake-up under load)."""
        for _ in range(64):
            if self._poller.full():
                if select.select([self.socket], [], [], 0)[0]:      # one waits, really
                    self.wait_to_accept("the event loop waits on %d connections, as many "
                                        "as select() takes here" % self._poller.capacity)
                return
            try:
                request, client_address = self.get_request()
            except OSError as exc:  # nothing left (the socket is non-blocking), or no descriptor
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self.wait_to_accept(exc.strerror, " (raise the limit with ulimit -n)")
                return
            self._out_of_descriptors = False
            if not self.verify_request(request, client_address):
                self.shutdown_request(request)
                continue
            if not self._loop_handlers:
                try:
                    self.process_request(request, client_address)
                except Exception:
                    self.handle_error(request, client_address)
                    self.shutdown_request(request)
                continue
            try:
                handler = self.RequestHandlerClass(request, client_address, self, serve=False)
                handler.set_timeout(self.limits.header_timeout)     # for blocking writes
            except Exception:
                self.handle_error(request, client_address)
                self.shutdown_request(request)
                continue
            self.serve_connection(handler, generation)   # its request is often there already
            if self._generation != generation:
                return

    def wait_to_accept(self, reason, hint=""):
        """No connection can be taken now (no file descriptor free, or the
        poller is full): say so once, and wait a little rather than spin on the
        listening socket, which stays readable."""
        if not self._out_of_descriptors:
            self._out_of_descriptors = True
            logger.warning("Cannot accept connections: %s; they wait until some close%s.",
                           reason, hint)
        time.sleep(ACCEPT_RETRY_DELAY)

    def serve_connection(self, handler, generation):
        """Serve what arrived on a claimed connection, then wait for its next
        bytes or close it.  The watchdog times this thread while it works."""
        self.timed(generation)
        try:
            keep = handler.serve_ready()
        except Exception:
            self.handle_error(handler.request, handler.client_address)
            keep = False
        except BaseException:           # SystemExit in the app, say: this thread ends
            self.untimed(generation)
            self.close_connection(handler)
            raise
        self.untimed(generation)
        in_loop = self._generation == generation
        handler.ran_long = not in_loop          # another thread took the loop over
        if keep:            # even when stopping: close_idle_and_wait() decides then
            self.wait_for_bytes(handler, in_loop)
        else:
            self.close_connection(handler)

    def timed(self, generation):
        """The loop's thread starts something that may take long: the watchdog times it."""
        if self._generation == generation:
            self._busy_since = time.monotonic()
            if self._watchdog_asleep:
                self.wake(self._watchdog_wakeup)

    def untimed(self, generation):
        with self._busy_lock:           # not after a promotion: then it is the new thread's
            if self._generation == generation:
                self._busy_since = None

    def wait_for_bytes(self, handler, in_loop):
        """Hand a claimed connection back to the loop until its next bytes
        arrive or its deadline passes; in_loop: this thread runs the loop."""
        handler.deadline = handler.wait_deadline()
        try:
            earliest = self._poller.arm(handler.fileno, handler)
        except (OSError, ValueError):           # the server is closing
            self.close_connection(handler)
            return
        # The loop's thread picks up the new deadline when it next polls;
        # another thread wakes it (a selector also needs that to see the socket).
        if not in_loop and (earliest or not self._poller.use_epoll):
            self.wake_loop()

    def hand_over(self, handler):
        """A connection is its app's from now on (WSGIRequestHandler.take_over()):
        the event loop forgets its descriptor, whose number the system gives
        to a new connection once the app closes it."""
        if self._poller is not None:
            self._poller.forget(handler.fileno)
        handler.fileno = -1

    def close_connection(self, handler):
        try:
            self._poller.forget(handler.fileno)
            handler.finish()
        finally:
            self.shutdown_request(handler.request)

    def wake_loop(self):
        self.wake(self._wakeup_write)

    @staticmethod
    def wake(sock):
        try:
            sock.send(b"\0")
        except OSError:         # full (a wake-up is pending anyway) or closed
            pass

    def wake_on_signals(self):
        """Have a signal wake serve_forever() to run its handler (in the main
        thread): Windows' select() does not return for one."""
        signal.set_wakeup_fd(self._wakeup_write.fileno(), warn_on_full_buffer=False)
        self._wakes_on_signals = True

    def request_stop(self):
        """Make serve_forever() return soon; safe in signal handlers and threads."""
        self._stop_requested = True
        self._generation = next(self._generations)
        self.wake(self._watchdog_wakeup)
        self.wake_loop()

    def shutdown(self):
        """Stop serve_forever() and wait until it has returned."""
        self.request_stop()
        self._loop_done.wait()

    def get_request(self):
        """Accept a connection, and count it until shutdown_request().  It is
        counted before accept(), under the lock that close_idle_and_wait()
        takes to begin: that one waits for it, or none is accepted any more
        and the backlog stays for the next worker."""
        with self._connections_changed:
            if self.stopping:
                raise BlockingIOError(errno.EAGAIN, "the server is stopping")
            self._accepted += 1
        try:
            return super().get_request()
        except BaseException:
            with self._connections_changed:
                self._accepted -= 1
                self._connections_changed.notify_all()
            raise

    def shutdown_request(self, request):
        super().shutdown_request(request)
        with self._connections_changed:
            self._accepted -= 1
            self._connections_changed.notify_all()

    def track_connection(self, handler, opened):
        with self._connections_changed:
            if opened:
                self._connections.add(handler)
            else:
                self._connections.discard(handler)
                self._connections_changed.notify_all()

    def close_idle_and_wait(self, timeout, announce=None):
        """Close idle connections, give busy ones `timeout` seconds to finish
        their request (calling `announce` once with their number if there are
        any); return how many were still busy then.  A request that arrives as
        it happens still gets its response: connections waiting in the event
        loop are looked at for bytes first, and thread-per-connection ones
        (TLS) only get their reading side shut (on Linux, a read still returns
        what came before).  Connections apps took over (WebSockets) have no
        end of request to wait for: they are shut down at once, and their
        requests then end as the app sees its socket close."""
        deadline = time.monotonic() + timeout
        with self._connections_changed:
            self.stopping = True
            busy = sum(not handler.idle and handler.taken_over is not True
                       for handler in self._connections)
            if self.livereload is not None:
                self.livereload.end_streams()   # event streams are idle: they end now
            if busy and announce is not None:
                announce(busy)
            while self._accepted:
                now = time.monotonic()
                self.shut_taken_over()
                for handler in self._poller.claim_expired(float("inf")):
                    self.close_if_idle(handler, now)
                for handler in list(self._connections):
                    if self._loop_handlers:
                        break                   # the event loop's, just looked at
                    if handler.idle and now - handler.opened >= FIRST_REQUEST_GRACE:
                        try:            # on the socket, under any TLS layer
                            socket.socket.shutdown(handler.connection, socket.SHUT_RD)
                        except OSError:
                            pass
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._connections_changed.wait(min(remaining, 0.05))
            return self._accepted

    def shut_taken_over(self):
        """Shut down the connections apps took over (with _connections_changed held)."""
        for handler in self._connections:
            if handler.taken_over is True:
                try:            # under any TLS layer
                    socket.socket.shutdown(handler.connection, socket.SHUT_RDWR)
                except OSError:                 # shut already, or closed by the app
                    pass

    def server_close(self):
        if self._poller is not None:        # None if binding failed
            self.request_stop()             # a thread still in the loop leaves it
            self._poller.close()
        super().server_close()
        if self._wakes_on_signals and threading.current_thread() is threading.main_thread():
            signal.set_wakeup_fd(-1)        # before its number is reused
        for sock in (self._wakeup_read, self._wakeup_write,
                     self._watchdog_wake, self._watchdog_wakeup):
            sock.close()

    def close_if_idle(self, handler, now):
        """At a stop: close a connection claimed from the event loop, unless
        its request has (or is about to have) arrived; serve that one."""
        try:
            if not MSG_DONTWAIT:                # Windows: a peek that waits for nothing
                handler.set_timeout(0)
            pending = handler.buffer or handler.connection.recv(
                1, socket.MSG_PEEK | MSG_DONTWAIT)
        except BlockingIOError:
            pending = None
        except OSError:
            pending = b""
        if pending:
            threading.Thread(target=self.finish_connection, args=(handler,),
                             daemon=True).start()
        elif pending is None and handler.requests == 0 \
                and now - handler.opened < FIRST_REQUEST_GRACE:
            self._poller.arm(handler.fileno, handler)   # its request is on the way
        else:
            self.close_connection(handler)

    def finish_connection(self, handler):
        """Serve, blocking, the requests that arrived as the server stopped."""
        try:
            handler.handle()
        finally:
            self.close_connection(handler)

    def host_allowed(self, host):
        """Whether a Host header (bytes) passes the DNS-rebinding check."""
        if host in self._hosts_allowed:
            return True
        allowed = host_matches(host.decode("latin-1"), self.allowed_hosts)
        if allowed and len(host) <= CACHE_ENTRY_LENGTH:     # a refused one is not cached
            if len(self._hosts_allowed) < CACHE_ENTRIES:
                self._hosts_allowed.add(host)
            if len(HOSTS_CHECKED) < CACHE_ENTRIES:
                HOSTS_CHECKED.add(host)         # checked before: parse_request_head()
                                                # or, from a proxy, forwarded_host()
        return allowed

    def handle_error(self, request, client_address):
        logger.error("Internal error while serving %s", client_address, exc_info=True)


class UnixWSGIServer(WSGIServer):
    """WSGIServer on a unix domain socket (ADDRPORT unix:/path/to.sock)."""

    address_family = getattr(socket, "AF_UNIX", None)     # None on Windows

    def server_bind(self):
        remove_stale_socket(self.server_address)
        self.socket.bind(self.server_address)
        self.owns_socket_file = True

    def server_close(self):
        super().server_close()
        if self.owns_socket_file:
            try:
                os.unlink(self.server_address)
            except OSError:
                pass


def wakeup_sockets():
    """A connected pair of non-blocking sockets, to wake a select() by sending
    a byte: a pipe would do on POSIX, but Windows' select() takes only sockets."""
    pair = socket.socketpair()
    for sock in pair:
        sock.setblocking(False)
    return pair


def remove_stale_socket(path):
    """Remove a socket file left by a dead server; refuse anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if mode & 0o170000 != 0o140000:
        raise OSError(errno.EEXIST, "%s exists and is not a socket; not removing it" % path)
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        return
    except OSError:
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, "another server is listening on %s" % path)


def is_loopback(host):
    """Whether an address or name is this machine's loopback."""
    return host == "localhost" or host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")


def default_allowed_hosts(server):
    """Loopback servers answer only local Host names; others answer any."""
    if not isinstance(server.server_address, tuple) or not is_loopback(server.server_address[0]):
        return ["*"]
    return ["localhost", ".localhost", "127.0.0.1", "[::1]", server.server_address[0]]


def host_matches(host, allowed):
    """Whether a Host value matches one of `allowed` ('*', '.domain', or a name)."""
    if "*" in allowed:
        return True
    name = host.lower()
    if name.startswith("["):
        name = name[:name.find("]") + 1]
    else:
        name = name.rpartition(":")[0] or name if ":" in name else name
    name = name.rstrip(".")
    for entry in allowed:
        entry = entry.lower()
        if ":" in entry and not entry.startswith("["):
            entry = "[%s]" % entry                     # a bare IPv6 address
        if name == entry or entry.startswith(".") and (name == entry[1:] or name.endswith(entry)):
            return True
    return False


def server_authority(server):
    """host:port for a URL of the server: localhost when it is bound to every
    interface or to a unix socket."""
    address = server.server_address
    if not isinstance(address, tuple):
        return "localhost"
    name = "localhost" if address[0] in ("0.0.0.0", "::") else address[0]
    return ("[%s]:%d" if ":" in name else "%s:%d") % (name, address[1])


def serving_app(app, static=(), root_path=""):
    """The app as the server calls it: mounted under root_path, behind the
    static files, whose URL prefixes stay absolute."""
    if root_path:
        app = RootPath(app, root_path)
    return StaticFiles(app, static) if static else app


def make_server(app, host=DEFAULT_HOST, port=DEFAULT_PORT, *, ipv6=None, threading=True,
                unix_socket=None, ssl_context=None, static=(), limits=None, quiet=False,
                debug=None, allowed_hosts=None, listen_socket=None,
                handler_class=WSGIRequestHandler, editor=None, root_path="",
                proxy_headers=False, forwarded_allow_ips=None, livereload=False):
    """Bind a server for the WSGI `app` and return it, ready for serve_forever().

    port 0 picks a free port (server.server_port tells which).  unix_socket is
    a path to listen on instead of host and port.  static is a list of
    (url_prefix, directory) pairs served before the app.  debug (default: on
    for loopback addresses) makes a 500 the error page; editor is a URL
    template for its file:line links, like 'vscode://file/{path}:{line}'.  allowed_hosts
    (default: local names on loopback, any elsewhere) guards against DNS
    rebinding.  limits is a Limits().  root_path mounts the app under a URL
    path (see RootPath).  proxy_headers trusts the forwarding headers of the
    proxies in forwarded_allow_ips (default DEFAULT_FORWARDED_ALLOW_IPS).
    livereload answers LIVERELOAD_PREFIX's paths and puts the live-reload
    script in the pages browsers open (with threading only: a stream holds one).
    Stop it with shutdown() from another thread, then server_close().
    """
    if unix_socket and UnixWSGIServer.address_family is None:
        raise OSError(errno.EAFNOSUPPORT, "unix domain sockets are not available on this "
                      "system: use a TCP address, not unix:%s" % unix_socket)
    base = UnixWSGIServer if unix_socket else WSGIServer
    if threading:
        # The mixin comes first so that its process_request() wins in the MRO.
        server_class = type("WSGIServer", (LoopThreadingMixIn, base),
                            {"daemon_threads": True})
    else:
        server_class = base
    app = serving_app(app, static, root_path)
    if ipv6 is None:
        ipv6 = ":" in host
    if debug is None:
        debug = bool(unix_socket) or is_loopback(host)
    address = unix_socket if unix_socket else (host, port)
    return server_class(address, app, handler_class=handler_class, ipv6=ipv6,
                        listen_socket=listen_socket, ssl_context=ssl_context, limits=limits,
                        quiet=quiet, debug=debug, allowed_hosts=allowed_hosts, editor=editor,
                        proxy_headers=proxy_headers, forwarded_allow_ips=forwarded_allow_ips,
                        livereload=livereload and threading)


class ServerURL(str):
    """The base URL serving() gives, like 'http://127.0.0.1:8123'; .server is the server."""

    server = None


@contextlib.contextmanager
def serving(app, host=DEFAULT_HOST, port=0, **options):
    """Serve `app` in a daemon thread for the length of a `with` block, on a
    free port unless told; give the base URL (a ServerURL).  On exit stop it,
    close its connections (requests still running get the shutdown timeout
    of `limits`) and join the thread.  Options are make_server()'s."""
    server = make_server(app, host, port, **options)
    thread = threading.Thread(target=server.serve_forever, name="runserver.serving",
                              daemon=True)
    try:
        thread.start()
        while not server.serving.wait(0.05) and thread.is_alive():
            pass
        url = ServerURL("%s://%s%s" % ("https" if server.ssl_context else "http",
                                       server_authority(server),
                                       options.get("root_path", "")))
        url.server = server
        yield url
    finally:
        server.shutdown()
        server.close_idle_and_wait(server.limits.shutdown_timeout)
        server.server_close()
        thread.join()


# ---- Reloader -----------------------------------------------------------------
# Three roles, one entry function each: the supervisor (run_supervisor()) holds
# the socket and starts workers; the template (run_template()) keeps the
# libraries imported and forks workers; a worker (inner_run()) serves the app
# and polls its files.  What one tells another goes as a message
# (encode_message()) on a pipe or a unix socket; no exit status means anything.

# The supervisor talks to its workers in _RUNSERVER_* variables; RUNSERVER_*
# (no underscore first) are the options' (see resolve_settings()), never these.
ENV_LISTEN_FD = "_RUNSERVER_LISTEN_FD"          # the inherited listening socket
ENV_SUPERVISOR_FD = "_RUNSERVER_SUPERVISOR_FD"  # reaches EOF when the supervisor dies
ENV_REPORT_FD = "_RUNSERVER_REPORT_FD"          # the pipe of the worker's messages
ENV_RESTARTS = "_RUNSERVER_RESTARTS"            # how many workers came before
ENV_WATCHLIST = "_RUNSERVER_WATCHLIST"          # the file a worker lists its watched files in
ENV_WARM = "_RUNSERVER_WARM"                    # "1": a template preloads the worker's libraries
ENV_TEMPLATE_FD = "_RUNSERVER_TEMPLATE_FD"      # in a template: its socket to the supervisor
ENV_SUPERVISOR_ADDRESS = "_RUNSERVER_SUPERVISOR_ADDRESS"    # Windows: "PORT TOKEN" to connect to
WORKER_ENVIRONMENT = (ENV_LISTEN_FD, ENV_SUPERVISOR_FD, ENV_REPORT_FD, ENV_RESTARTS,
                      ENV_WATCHLIST, ENV_WARM, ENV_SUPERVISOR_ADDRESS)
# Windows has no fork() and passes no descriptor by number: each worker is
# started afresh and gets the listening socket from socket.share() (WindowsWorker).
SHARE_LISTENING_SOCKET = sys.platform == "win32"

_worker = {}                                    # this worker's ENV_* values, taken once, and
                                                # "link": its connection to a Windows supervisor
_preloaded = {}                                 # in a forked worker: the template's files, with
                                                # their stat_key() when it imported them
_report_lock = threading.Lock()                 # one message at a time on the report pipe


def is_reloader_worker():
    """True in a worker process started by a reloading supervisor."""
    return ENV_LISTEN_FD in os.environ or bool(_worker)


def take_worker_environment():
    """Move the ENV_* variables out of os.environ and keep the descriptors they
    name from being inherited, so that the app's own child processes get
    neither (nor hold the port); return them."""
    if not _worker and ENV_LISTEN_FD in os.environ:
        for name in WORKER_ENVIRONMENT:
            _worker[name] = os.environ.pop(name, "")
        for name in (ENV_LISTEN_FD, ENV_SUPERVISOR_FD, ENV_REPORT_FD, ENV_WATCHLIST):
            if _worker[name]:
                os.set_inheritable(int(_worker[name]), False)
    return _worker


def worker_environment(fds, restarts, warm):
    """The ENV_* variables of a worker given `fds`: (listening socket, lifeline,
    report pipe, watchlist), as a started, a forked and a first worker get them."""
    listen, lifeline, report, watchlist = fds
    return {ENV_LISTEN_FD: str(listen), ENV_SUPERVISOR_FD: str(lifeline),
            ENV_REPORT_FD: str(report), ENV_WATCHLIST: str(watchlist),
            ENV_RESTARTS: str(restarts), ENV_WARM: "1" if warm else ""}


def report_to_supervisor(*fields):
    """In a worker: send a message to the supervisor (see Supervisor.on_worker_message())."""
    link = _worker.get("link")
    if not (link or _worker.get(ENV_REPORT_FD)):
        return
    data = encode_message(*fields)
    with _report_lock:
        try:
            if link:
                link.sendall(data)
            else:
                while data:
                    data = data[os.write(int(_worker[ENV_REPORT_FD]), data):]
        except OSError:                 # the supervisor is gone; the lifeline says so too
            pass


def encode_message(*fields):
    """A message between the reloader's processes: the length of its payload
    and a newline, then its str fields joined by NUL, which neither a path
    nor a module name contains."""
    payload = b"\0".join(os.fsencode(field) for field in fields)
    return b"%d\n%s" % (len(payload), payload)


def parse_messages(data):
    """The complete messages at the start of `data`, as lists of fields, and the rest."""
    messages = []
    while True:
        header, newline, rest = data.partition(b"\n")
        if not newline or len(rest) < int(header):
            return messages, data
        size = int(header)
        messages.append([os.fsdecode(field) for field in rest[:size].split(b"\0")])
        data = rest[size:]


def forward_messages(read, events, source):
    """In a thread of the supervisor: put ("message", source, fields) on
    `events` for each message read(size) brings, and fields None at its end."""
    data = b""
    while True:
        try:
            chunk = read(1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            events.put(("message", source, None))
            return
        messages, data = parse_messages(data + chunk)
        for fields in messages:
            events.put(("message", source, fields))


def stat_key(path):
    """What identifies a version of a file: (mtime_ns, size, inode); None if missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def module_source(module):
    """The file to watch for a module: its .py source, or its zip archive."""
    filename = getattr(module, "__file__", None)
    if not filename or not isinstance(filename, str):
        return None
    archive = getattr(getattr(module, "__loader__", None), "archive", None)
    if isinstance(archive, str):
        return archive
    if filename.endswith(".pyc"):
        try:
            source = importlib.util.source_from_cache(filename)
        except (ValueError, NotImplementedError):
            return filename
        return source if os.path.exists(source) else filename
    return filename


class FileWatcher:
    """Poll files for changes of (mtime_ns, size, inode), appearance or removal.

    Watched: the source of every imported module outside the standard library
    (site-packages every SLOW_POLL_EVERY polls), `extra_files`, the `include`
    paths and globs, the `templates` directories beside the project's modules
    and the `template_dirs` (its framework's), minus the `exclude` globs; and
    the other .py files in the directories of the project's modules, new ones
    too (a module that failed to import is not in sys.modules).  Directory
    walks and globs leave out RELOAD_IGNORE's names, virtualenvs and the
    files this process's stdout and stderr write to (a log there would reload
    at every line), but a file `include` names is always watched.  A file seen
    for the first time counts as changed if it was modified after `since_ns` (default: now) or
    after the previous poll began (its module may have been imported before),
    give or take MTIME_SLACK_NS,
    but not if its time is in the future (clock skew: that would never settle).
    """

    def __init__(self, include=(), exclude=(), extra_files=(), watch_modules=True,
                 since_ns=None, template_dirs=()):
        import site
        import sysconfig
        self.include = list(include)
        self.exclude = list(exclude)
        self.ignore_pattern = None     # RELOAD_IGNORE's, compiled in the watcher's thread
        self.output_files = output_files()
        self.output_inodes = {inode for _, inode in self.output_files}
        self.extra_files = {os.path.abspath(path) for path in extra_files}
        self.watch_modules = watch_modules
        self.template_dirs = {os.path.abspath(path) for path in template_dirs}
        self.templates = set()         # the template directories of the last walk
        self.looked_ns = 0             # ... of the include paths, and when it began
        paths = sysconfig.get_paths()
        site_dirs = {paths["purelib"], paths["platlib"]}
        site_dirs.update(getattr(site, "getsitepackages", lambda: [])())
        site_dirs.add(getattr(site, "USER_SITE", None) or paths["purelib"])
        self.site_dirs = tuple(os.path.join(path, "") for path in site_dirs)
        self.stdlib_dirs = tuple(os.path.join(paths[key], "") for key in ("stdlib", "platstdlib"))
        self.fast, self.slow, self.included = set(), set(), set()
        self.directories = {}          # project directory -> (mtime_ns, its .py names)
        self.siblings = set()          # the .py files there that are no module's source
        self.snapshot = {}
        self.hot = []                  # the HOT_FILES most recently modified files
        self.since_ns = (time.time_ns() if since_ns is None else since_ns) - MTIME_SLACK_NS
        self.module_count = -1
        self.polls = 0
        self.on_files_changed = None   # called with the new set of watched files
        self.on_modules_changed = None # called when modules were imported
        self.changed = []              # what wait_for_change() saw change

    def excluded(self, path):
        return any(fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(os.path.basename(path), pattern)
                   for pattern in self.exclude)

    def refresh(self, slow_turn):
        """Recompute the file lists when modules were imported, and globs on slow
        turns; return whether they changed."""
        changed = False
        if self.watch_modules and len(sys.modules) != self.module_count:
            self.module_count = len(sys.modules)
            fast, slow = set(self.extra_files), set()
            for module in list(sys.modules.values()):
                path = module_source(module)
                if path is None:
                    continue
                path = os.path.abspath(path)
                if path.startswith(self.site_dirs):
                    slow.add(path)
                elif not path.startswith(self.stdlib_dirs):
                    fast.add(path)
            changed = (fast, slow) != (self.fast, self.slow)
            self.fast, self.slow = fast, slow
            if self.on_modules_changed is not None:
                self.on_modules_changed()
        elif not self.watch_modules and not self.fast:
            self.fast = set(self.extra_files)
            changed = True
        if changed:
            for path in self.fast:
                if path.endswith(".py"):
                    self.directories.setdefault(os.path.dirname(path), None)
        if slow_turn:
            looked_ns, templates = time.time_ns() - MTIME_SLACK_NS, self.template_directories()
            found = tuple(os.path.join(path, "") for path in templates - self.templates)
            included = set()
            for entry in self.include + [glob.escape(path) for path in sorted(templates)]:
                if glob.has_magic(entry):
                    included.update(self.glob_files(entry))
                elif os.path.isdir(entry):
                    included.update(self.walk_files(entry))
                else:
                    included.add(os.path.abspath(entry))
            appeared = included - self.included
            changed = changed or bool(appeared)
            if self.polls > 1:
                # Files new since the last look are changes; in a template
                # directory found only now, those modified since.
                for path in appeared:
                    if not path.startswith(found) or (stat_key(path) or (0,))[0] > self.looked_ns:
                        self.snapshot[path] = None
            self.included, self.templates, self.looked_ns = included, templates, looked_ns
        if changed and self.on_files_changed is not None:
            self.on_files_changed(self.watched())
        return changed

    def template_directories(self):
        """The existing `templates` directories beside the project's modules, and
        `template_dirs`, outside site-packages and the standard library."""
        candidates = {os.path.join(path, "templates") for path in self.directories}
        return {path for path in candidates | self.template_dirs
                if not path.startswith(self.site_dirs + self.stdlib_dirs) and os.path.isdir(path)}

    def ignored_name(self, name):
        """Whether RELOAD_IGNORE leaves out this name."""
        if self.ignore_pattern is None:
            self.ignore_pattern = re.compile("|".join(map(fnmatch.translate, RELOAD_IGNORE)))
        return self.ignore_pattern.match(name) is not None

    def ignored(self, name, path):
        """Whether a directory walk leaves out this file or directory."""
        return self.ignored_name(name) or self.excluded(path)

    def walk_files(self, top):
        """The files below the directory `top`, as os.walk() finds them, less the
        ignored ones; ignored directories and virtualenvs are not entered."""
        directories = [top]
        while directories:
            try:
                with os.scandir(directories.pop()) as scan:
                    entries = list(scan)
            except OSError:
                continue
            for entry in entries:
                if self.ignored(entry.name, entry.path):
                    continue
                try:
                    if not entry.is_dir():      # (inode() is a system call on Windows)
                        if not (self.output_inodes and entry.inode() in self.output_inodes
                                and self.is_output(entry.path)):
                            yield os.path.abspath(entry.path)
                    elif not entry.is_symlink() and not os.path.exists(
                            os.path.join(entry.path, VIRTUALENV_MARKER)):
                        directories.append(entry.path)
                except OSError:
                    continue

    def glob_files(self, pattern):
        """The files a glob matches (the directories it matches, walked), less
        those under an ignored name or a virtualenv below its fixed part."""
        separators = "[%s]" % re.escape(os.sep + (os.altsep or ""))
        parts = re.split(separators, pattern)
        fixed = list(itertools.takewhile(lambda part: not glob.has_magic(part), parts[:-1]))
        root = os.sep.join(fixed) or (os.sep if fixed else os.curdir)
        virtualenvs = {}
        for path in glob.glob(pattern, recursive=True):
            names = re.split(separators, os.path.relpath(path, root))
            below = [os.path.join(root, *names[:depth]) for depth in range(1, len(names) + 1)]
            if any(self.ignored(name, where) for name, where in zip(names, below)):
                continue
            is_directory = os.path.isdir(path)
            for where in below if is_directory else below[:-1]:
                if where not in virtualenvs:
                    virtualenvs[where] = os.path.exists(os.path.join(where, VIRTUALENV_MARKER))
                if virtualenvs[where]:
                    break
            else:
                if is_directory:
                    yield from self.walk_files(path)
                elif not self.is_output(path):
                    yield os.path.abspath(path)

    def is_output(self, path):
        """Whether `path` is a file this process's stdout or stderr writes to."""
        if not self.output_files:
            return False
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in self.output_files

    def watched(self):
        return {path for path in self.fast | self.slow | self.included | self.siblings
                if not self.excluded(path)}

    def poll(self):
        """Stat every watched file once; return the paths that changed."""
        self.polls += 1
        slow_turn = self.polls % SLOW_POLL_EVERY == 1          # the first poll is one
        files_changed = self.refresh(slow_turn)
        since_ns, self.since_ns = self.since_ns, time.time_ns() - MTIME_SLACK_NS
        changed = []
        groups = (self.fast, self.included, self.siblings)
        for group in groups + (self.slow,) if slow_turn else groups:
            self.check(group, since_ns, changed)
        for directory, seen in list(self.directories.items()):
            key = stat_key(directory)
            if seen is not None and seen[0] == key:
                continue
            try:
                names = {name for name in os.listdir(directory)
                         if name.endswith(".py") and not self.ignored_name(name)}
            except OSError:
                names = set()
            if seen is None:            # a first look: files made since `since_ns` are new
                new = [name for name in names
                       if since_ns < (stat_key(os.path.join(directory, name)) or (0,))[0]
                       <= time.time_ns()]
            else:
                new = names - seen[1]
            for name in sorted(new):
                path = os.path.join(directory, name)
                if path not in changed and not self.excluded(path):    # once, if watched
                    changed.append(path)
                    # Saved since check() looked, maybe: settle() waits from its time.
                    self.snapshot[path] = stat_key(path)
            self.directories[directory] = (key, names)
            files_changed = True
        if files_changed:
            siblings = {os.path.join(directory, name)
                        for directory, (_, names) in self.directories.items()
                        for name in names} - self.fast
            if siblings != self.siblings:
                self.siblings = siblings
                if self.on_files_changed is not None:
                    self.on_files_changed(self.watched())

            def mtime(path):
                return (self.snapshot.get(path) or (0,))[0]
            self.hot = sorted(self.fast | self.included, key=mtime, reverse=True)[:HOT_FILES]
        return changed

    def poll_hot(self):
        """Stat only the HOT_FILES most recently modified files; return those that changed."""
        changed = []
        self.check(self.hot, self.since_ns, changed)
        return changed

    def check(self, paths, since_ns, changed):
        """Stat `paths`, remember what they are now, append those that changed."""
        snapshot, stat = self.snapshot, os.stat
        for path in paths:              # the reloader's hot loop: stat_key(), inlined
            try:
                st = stat(path)
                key = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError:
                key = None
            seen = snapshot.get(path, False)                    # False: never seen
            if seen != key:
                snapshot[path] = key
                if (seen is not False or key is not None and since_ns < key[0] <= time.time_ns()) \
                        and not self.excluded(path):
                    changed.append(path)

    def wait_for_change(self, interval, stop=None):
        """Block until a watched file changes and return its path (None if `stop`
        is set); self.changed then lists every path that changed meanwhile.
        Every file is polled each `interval`, or less often if that took more
        than POLL_CPU_BUDGET of a core; the hot ones each HOT_POLL_INTERVAL."""
        stop = stop or threading.Event()
        due = 0
        while True:
            if time.monotonic() >= due:
                started, cpu = time.monotonic(), time.thread_time()
                changed = self.poll()
                due = started + max(interval, (time.thread_time() - cpu) / POLL_CPU_BUDGET)
            else:
                changed = self.poll_hot()
            if changed:
                self.changed = changed + self.settle(changed, stop)
                return changed[0]
            if stop.wait(min(interval, HOT_POLL_INTERVAL)):
                return None

    def settle(self, changed, stop):
        """Let a burst of saves end: wait until the newest change is RELOAD_DEBOUNCE
        old and no other came meanwhile (at most a second); return the paths
        that changed meanwhile."""
        deadline = time.monotonic() + 1.0
        later = []
        while changed:
            now = time.time_ns()
            newest = min(now, max((self.snapshot.get(path) or (now,))[0] for path in changed))
            quiet = RELOAD_DEBOUNCE - (now - newest) / 1e9
            remaining = deadline - time.monotonic()
            if quiet <= 0 or remaining <= 0 or stop.wait(min(quiet, remaining)):
                return later
            changed = self.poll()
            later += changed
        return later


_library_paths = []     # library_paths(), computed once


def library_paths():
    """(the directories of the standard library and of site-packages, the
    interpreter's prefixes, the project's directories: those of sys.path
    outside the first, and the working directory), each ending with a
    separator."""
    if not _library_paths:
        import site
        import sysconfig
        paths = sysconfig.get_paths()
        found = [paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")]
        found += getattr(site, "getsitepackages", lambda: [])()
        found.append(getattr(site, "USER_SITE", None))
        libraries = tuple({os.path.join(variant, "") for path in found if path
                           for variant in (os.path.abspath(path), os.path.realpath(path))})
        prefixes = tuple({os.path.join(os.path.abspath(path), "") for path in (
            sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)})
        project = set()
        for entry in sys.path + [os.getcwd()]:
            if isinstance(entry, str):
                directory = os.path.join(os.path.abspath(entry or os.curdir), "")
                if not directory.startswith(libraries):
                    project.add(directory)
        project = tuple(project)
        _library_paths.extend((libraries, prefixes, project))
    return _library_paths


def is_project_path(path):
    """Whether a module's file is the project's: not in the standard library or
    site-packages, and in a directory of sys.path (an editable install's
    too) or the working directory, or else outside the interpreter's prefixes."""
    libraries, prefixes, project = library_paths()
    path = os.path.abspath(path)
    if path.startswith(libraries):
        return False
    return path.startswith(project) or not path.startswith(prefixes)


def is_library_spec(spec):
    """Whether a module spec is the interpreter's or site-packages', not the project's."""
    if spec.origin in ("built-in", "frozen"):
        return True
    if spec.has_location and isinstance(spec.origin, str):
        return not is_project_path(spec.origin)
    locations = list(spec.submodule_search_locations or ())     # a namespace package
    return bool(locations) and not any(is_project_path(path) for path in locations)


def library_modules():
    """The names of the imported modules that are not the project's, in the
    order their imports began: what a template preloads for the next worker."""
    names = []
    for name, module in list(sys.modules.items()):
        try:
            spec = module.__spec__
            if spec.name == name != "__main__" and is_library_spec(spec):
                names.append(name)
        except Exception:           # no spec, an alias (os.path), a module made at run time
            pass
    return names
def output_files():
    """(st_dev, st_ino) of the regular files this process's stdout and stderr write to."""
    found = set()
    for fd in (1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if st.st_mode & 0o170000 == 0o100000:
            found.add((st.st_dev, st.st_ino))
    return found


# sys.path[0] as Python set it for `python runserver.py` (run() later puts the
# working directory before it): the worker's import of runserver gets the same.
_SCRIPT_PATH0 = sys.path[0] if __name__ == "__main__" and sys.path else None


def worker_command():
    """The command line that started this process, to start a worker with.

    `python runserver.py ...` becomes an import of runserver: Python compiles
    a script from source at every start (some 50 ms for this file), but
    imports a module from its cached bytecode, and a worker starts at every
    reload.  sys.argv and sys.path[0] stay what the script would see."""
    if hasattr(sys, "orig_argv"):
        flags = sys.orig_argv[1:len(sys.orig_argv) - len(sys.argv)]
    else:
        import subprocess
        flags = subprocess._args_from_interpreter_flags()
    main_module = sys.modules["__main__"]
    if workers_import_runserver():
        boot = ("import sys; sys.argv[0] = %r; sys.path[0] = %r; import runserver; "
                "sys.exit(runserver.main())" % (sys.argv[0], _SCRIPT_PATH0))
        return [sys.executable] + flags + ["-c", boot] + sys.argv[1:]
    if hasattr(sys, "orig_argv"):
        return [sys.executable] + sys.orig_argv[1:]
    spec = getattr(main_module, "__spec__", None)
    if spec is not None and spec.name and spec.origin \
            and os.path.abspath(spec.origin) == os.path.abspath(sys.argv[0]):   # not a launcher's
        name = spec.name[:-len(".__main__")] if spec.name.endswith(".__main__") else spec.name
        return [sys.executable] + flags + ["-m", name] + sys.argv[1:]
    return [sys.executable] + flags + sys.argv


def is_the_program():
    """Whether this file is the program itself (`python runserver.py` or
    `python -m runserver`), not run by a profiler, a debugger or a launcher."""
    if __name__ != "__main__" or vars(sys.modules["__main__"]) is not globals():
        return False
    frame = sys._getframe()
    while frame is not None and frame.f_globals is globals():
        frame = frame.f_back
    while frame is not None and frame.f_globals.get("__name__") == "runpy":
        frame = frame.f_back            # python -m runserver
    return frame is None


def workers_import_runserver():
    """Whether a started worker imports this file as the module runserver (see
    worker_command()): when the program is `python runserver.py`."""
    return (is_the_program() and os.path.basename(__file__) == "runserver.py"
            and getattr(sys.modules["__main__"], "__spec__", None) is None)


def run_supervisor(server, watchlist, terminal, first_worker=None,
                   shutdown_timeout=Limits.shutdown_timeout,
                   reload_interval=DEFAULT_RELOAD_INTERVAL, warm=False):
    """The supervisor's entry: keep a worker serving on `server`'s socket and
    start the next one when it asks, forked from a template if `warm`; return
    the exit status.  The supervisor itself never imports the app.  terminal is
    save_terminal()'s, to restore at the end; first_worker is what
    fork_first_worker() returned, if it forked one."""
    supervisor = Supervisor(server, watchlist, warm, shutdown_timeout, reload_interval)
    for signum in STOP_SIGNALS:
        signal.signal(signum, supervisor.on_signal)
    if first_worker is not None:            # fork_first_worker() held them back until now
        signal.pthread_sigmask(signal.SIG_SETMASK, first_worker[1])
    try:
        return supervisor.run(first_worker[0] if first_worker else None)
    finally:
        supervisor.close()
        watchlist.close()
        restore_terminal(terminal)
        server.server_close()


class Worker:
    """A worker as the supervisor knows it: the pipes to it, its pid, what it said.

    Its messages: "modules NAME..." (the libraries it imported, to preload),
    "reload" (it exits for a new worker), "stop STATUS" (a mistake on the
    command line: the supervisor exits with STATUS).  Anything else that ends
    it is a crash."""

    def __init__(self, lifeline, report, process=None):
        self.lifeline = lifeline    # write end of the pipe whose end of file stops it
        self.report = report        # read end of the pipe of its messages
        self.process = process      # Popen or ForkedProcess if the supervisor is its parent
        self.pid = None if process is None else process.pid    # else the template's "forked"
        self.orphan = False         # its template is gone: no exit status will come
        self.code = None            # its exit status, once known
        self.exited_at = self.exited_ns = None
        self.closed = False         # its report pipe reached its end
        self.reload = False
        self.stop_status = None

    def exited(self, code):
        self.code, self.exited_at, self.exited_ns = code, time.monotonic(), time.time_ns()

    def ended(self, now):
        """Whether it has exited and said all it had to say (messages written
        before its exit may arrive just after the news of it)."""
        if self.code is None:
            if self.closed and self.orphan:
                self.exited_at, self.exited_ns = now, time.time_ns()
                return True
            return False
        return (self.closed or self.reload or self.stop_status is not None
                or now >= self.exited_at + EXIT_GRACE)

    def send_signal(self, signum):
        if self.process is not None:
            self.process.send_signal(signum)
        elif self.pid is not None and self.code is None and not self.orphan:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def terminate(self):
        """Ask it to stop gracefully (it finishes its requests)."""
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def read_reports(self, events):
        """In a thread: put its messages on `events` until its report pipe ends."""
        forward_messages(lambda size: os.read(self.report, size), events, self)
        os.close(self.report)

    def close_lifeline(self):
        """The end of file on its lifeline stops it, if it still runs."""
        os.close(self.lifeline)


class Supervisor:
    """What the supervisor knows and does; run() is its loop.  Threads and
    signal handlers only put events on `events`; the loop alone acts."""

    def __init__(self, server, watchlist, warm, shutdown_timeout, reload_interval):
        self.server, self.watchlist = server, watchlist
        self.warm = warm                # workers come from a template while this holds
        self.shutdown_timeout, self.reload_interval = shutdown_timeout, reload_interval
        self.events = queue.SimpleQueue()   # (kind, source, value); its put() is reentrant
        self.worker = None
        self.template = None
        self.modules = []               # the last worker's library modules
        self.template_at = None         # when to start the first template (monotonic)
        self.restarts = 0
        self.due = None                 # since when (monotonic) a new worker is due
        self.stopping = False
        self.crash_watcher = None       # after a crash: a FileWatcher of the files to fix

    def on_signal(self, signum, frame):
        self.events.put(("signal", None, signum))

    def run(self, first_worker):
        """Handle events until the end; return the exit status."""
        if first_worker is None:
            self.due = time.monotonic()
        else:
            self.worker = first_worker
            self.follow(first_worker)
        while True:
            status = self.advance()
            if status is not None:
                return status
            try:
                kind, source, value = self.events.get(timeout=self.timeout())
            except queue.Empty:
                continue
            if kind == "signal":
                self.stop(value)
            elif kind == "exit":
                source.exited(value)
            elif isinstance(source, Worker):
                self.on_worker_message(source, value)
            elif source is self.template:
                self.on_template_message(value)

    def timeout(self):
        """How long the loop may wait for an event before it has something to do."""
        now, deadlines = time.monotonic(), []
        if self.crash_watcher is not None:
            deadlines.append(now + self.reload_interval)
        if self.template_at is not None:
            deadlines.append(self.template_at)
        if self.due is not None:
            deadlines.append(self.due + TEMPLATE_PATIENCE)
        if self.worker is not None and self.worker.code is not None:
            deadlines.append(self.worker.exited_at + EXIT_GRACE)
        return max(0.0, min(deadlines) - now) if deadlines else None

    def advance(self):
        """Act on what is known: a worker that ended, a crash fixed, a worker
        due.  Return the exit status once done."""
        now = time.monotonic()
        worker = self.worker
        if worker is not None and worker.ended(now):
            self.worker = None
            worker.close_lifeline()
            if self.stopping or worker.stop_status is not None:
                return self.finish(0 if self.stopping else worker.stop_status)
            if worker.reload:
                self.restarts += 1
                self.due = now
            else:
                self.crashed(worker)
        if self.stopping and self.worker is None:
            return self.finish(0)
        if self.crash_watcher is not None:
            changed = self.crash_watcher.poll()
            if changed:
                logger.info("%s changed, restarting.", changed[0])
                remove_stale_bytecode(changed)      # the crashed code's, if saved that second
                self.end_crash_wait()
                self.restarts += 1
                self.due = now
        if self.template_at is not None and (now >= self.template_at or self.due is not None):
            self.template_at = None
            self.preload()
        if self.due is not None and self.worker is None:
            self.start_worker(now)
        return None

    def start_worker(self, now):
        """Start the due worker: forked from the template, waiting up to
        TEMPLATE_PATIENCE for it to import what the last worker had, or else
        as a new interpreter."""
        if self.template is not None and self.warm and not self.template.ready:
            if now < self.due + TEMPLATE_PATIENCE:
                return
            self.warm_off("the template took more than %gs to import the libraries"
                          % TEMPLATE_PATIENCE)
        if self.template is not None and not self.warm:
            self.template.close()               # none of its workers is left
            self.template = None
        self.due = None
        if SHARE_LISTENING_SOCKET:
            self.worker = WindowsWorker(self.server.socket, self.restarts)
            self.follow(self.worker)
            return
        lifeline_end, lifeline = os.pipe()
        report, report_end = os.pipe()
        fds = (self.server.socket.fileno(), lifeline_end, report_end, self.watchlist.fileno())
        try:
            worker = None
            if self.template is not None:
                try:
                    self.template.fork(fds, self.restarts)
                    worker = Worker(lifeline, report)       # its pid comes with "forked"
                except OSError:                 # the template has just exited: its end says why
                    pass
            if worker is None:
                worker = Worker(lifeline, report, spawn_worker(fds, self.restarts, self.warm))
        finally:
            os.close(lifeline_end)
            os.close(report_end)
        self.worker = worker
        self.follow(worker)

    def follow(self, worker):
        """Put a worker's messages on the events, and its exit status if this is its parent."""
        threading.Thread(target=worker.read_reports, args=(self.events,),
                         name="runserver-reports", daemon=True).start()
        if worker.process is not None:
            def wait():
                self.events.put(("exit", worker, worker.process.wait()))
            threading.Thread(target=wait, name="runserver-wait", daemon=True).start()

    def on_worker_message(self, worker, fields):
        if fields is None:
            worker.closed = True
        elif fields[0] == "reload":
            worker.reload = True
        elif fields[0] == "stop":
            worker.stop_status = int(fields[1])
        elif fields[0] == "files":            # a Windows worker's watched files
            self.watchlist.seek(0)
            self.watchlist.truncate()
            self.watchlist.write(os.fsencode("\n".join(fields[1:])))
            self.watchlist.flush()
        elif fields[0] == "modules" and worker is self.worker:
            self.modules = fields[1:]
            if self.template is not None:
                self.preload()
            elif self.template_at is None:
                self.template_at = time.monotonic() + TEMPLATE_DELAY

    def preload(self):
        """Have the template import the last worker's library modules, starting one if need be."""
        if not self.warm:
            return
        try:
            if self.template is None:
                self.template = TemplateProcess(self.events)
            self.template.preload(self.modules)
        except OSError as exc:
            self.warm_off("the template could not be started (%s)" % (exc.strerror or exc))

    def on_template_message(self, fields):
        """What the template says: "ready" (preloaded all it was sent), "forked
        PID", "exited PID STATUS" (a worker it forked), "stale [PATH...]" (it
        cannot fork: files it imported have changed), "off REASON"."""
        template, worker = self.template, self.worker
        kind = fields[0] if fields else None
        if kind == "ready":
            template.ready = True
        elif kind == "forked" and worker is not None and worker.pid is None:
            worker.pid = int(fields[1])
            if self.stopping:
                self.terminate(worker)
        elif kind == "exited" and worker is not None and worker.pid == int(fields[1]):
            worker.exited(int(fields[2]))
        elif kind == "stale":
            remove_stale_bytecode(fields[1:])   # or a new template might import the old code
            self.replace_template()
        elif kind == "off":
            self.warm_off(fields[1])
        elif kind is None:                      # it died: its workers' exits go unreported
            template.close()
            self.template = None
            if worker is not None and worker.process is None:
                worker.orphan = True
            self.drop_fork_request()
            self.warm_off("the template process %s" % describe_exit(template.process.returncode))

    def replace_template(self):
        """The template may not fork: the due worker starts as a new interpreter
        while a new template imports the libraries in the background."""
        self.template.close()
        self.template = None
        if self.drop_fork_request():
            self.start_worker(self.due)
        self.preload()

    def drop_fork_request(self):
        """Forget the worker the template was asked to fork and will not; return
        whether there was one (a new worker is then due)."""
        worker = self.worker
        if worker is None or worker.pid is not None or worker.process is not None:
            return False
        worker.close_lifeline()
        self.worker = None
        self.due = time.monotonic()
        return True

    def warm_off(self, reason):
        """No more forks from a template, said once; the template itself goes
        when none of its workers is left (start_worker())."""
        if self.warm:
            logger.warning("Warm reloads are off: %s; each reload starts a new interpreter.",
                           reason)
        self.warm = False

    def stop(self, signum):
        """Ctrl-C, Ctrl-Break or SIGTERM: stop the worker gracefully; a second
        Ctrl-C kills it."""
        worker = self.worker
        if self.stopping and signum != signal.SIGTERM and worker is not None:
            worker.kill()
        self.stopping = True
        self.due = None
        if worker is not None:
            self.terminate(worker)

    def terminate(self, worker):
        worker.terminate()
        killer = threading.Timer(self.shutdown_timeout + 1, worker.kill)
        killer.daemon = True
        killer.start()

    def crashed(self, worker):
        """A worker ended without asking for a reload: say so, answer requests
        with an error page, and wait for one of its files to change."""
        message = "The server process %s; save a file to restart it." % describe_exit(worker.code)
        print(message, file=sys.stderr, flush=True)
        self.server.app = error_app(build_report(None, message))    # answer meanwhile, not hang
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.crash_watcher = crash_watcher(self.watchlist, worker.exited_ns)

    def end_crash_wait(self):
        self.server.shutdown()
        self.server.close_idle_and_wait(self.shutdown_timeout)
        self.crash_watcher = None

    def finish(self, status):
        if self.crash_watcher is not None:
            self.end_crash_wait()
        if self.template is not None:
            self.template.close()
            self.template = None
        if self.stopping:
            print_stopped()
        return status

    def close(self):
        """Leave no process behind, whatever happened."""
        worker = self.worker
        if worker is not None and worker.code is None:
            worker.kill()
            if worker.process is not None:
                worker.process.wait()
        if self.template is not None:
            self.template.close()


class TemplateProcess:
    """The supervisor's side of a template (see run_template()): a process
    started as a worker is, talking over a unix socket."""

    def __init__(self, events):
        import subprocess
        ours, theirs = socket.socketpair()
        environ = dict(os.environ)
        environ[ENV_TEMPLATE_FD] = str(theirs.fileno())
        try:
            self.process = subprocess.Popen(worker_command(), env=environ,
                                            pass_fds=(theirs.fileno(),))
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.channel = ours
        self.sent = set()       # the module names sent to it
        self.ready = False      # it has imported them all and may fork
        threading.Thread(target=forward_messages, args=(ours.recv, events, self),
                         name="runserver-template", daemon=True).start()

    def preload(self, names):
        new = [name for name in names if name not in self.sent]
        if new:
            self.sent.update(new)
            self.ready = False
            self.channel.sendall(encode_message("preload", *new))

    def fork(self, fds, restarts):
        """Ask for a worker with these descriptors (see worker_environment())."""
        socket.send_fds(self.channel, [encode_message("fork", str(restarts))], fds)

    def close(self):
        try:
            self.channel.shutdown(socket.SHUT_RDWR)     # ends the thread that reads it
        except OSError:
            pass
        self.channel.close()
        kill_process(self.process)      # it holds nothing to save, and ignores SIGTERM
        self.process.wait()


def spawn_worker(fds, restarts, warm):
    """Start a worker as a new interpreter (worker_command()) with `fds`: the
    way every POSIX system can, and the way without a template."""
    import subprocess
    environ = dict(os.environ)
    environ.update(worker_environment(fds, restarts, warm))
    return subprocess.Popen(worker_command(), env=environ, pass_fds=fds)


# Windows: a worker inherits no descriptor, so it connects to its supervisor
# over loopback, says the token it was started with, and receives the
# listening socket as socket.share() data (its length, a newline, the bytes).
# That connection is then the worker's lifeline (its end stops the worker),
# the channel of its messages, and the way "stop" reaches it (no SIGTERM).

class WindowsWorker(Worker):
    """A worker as a Windows supervisor knows it: started afresh with the
    port and token of a loopback listener that waits for its connection."""

    def __init__(self, server_socket, restarts):
        import secrets
        import subprocess
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.token = secrets.token_hex(16)
        environ = dict(os.environ)
        environ.update(dict.fromkeys(WORKER_ENVIRONMENT, ""))
        environ[ENV_RESTARTS] = str(restarts)
        environ[ENV_SUPERVISOR_ADDRESS] = "%d %s" % (self.listener.getsockname()[1], self.token)
        try:
            process = subprocess.Popen(worker_command(), env=environ)
        except OSError:
            self.listener.close()
            raise
        super().__init__(None, None, process)
        self.server_socket = server_socket
        self.connection = None
        self.lock = threading.Lock()            # for connection and closing
        self.closing = False

    def read_reports(self, events):
        connection = self.accept()
        if connection is None:
            events.put(("message", self, None))
        else:
            forward_messages(connection.recv, events, self)

    def accept(self):
        """Wait for the worker's connection with its token and pid, and share the
        socket with that pid; None if the worker ends first."""
        while True:
            try:
                connection = self.listener.accept()[0]
            except OSError:                     # close_lifeline(): it ended
                return None
            try:
                connection.settimeout(WORKER_CONNECT_TIMEOUT)
                data = b""
                while b"\n" not in data or not parse_messages(data)[0]:
                    chunk = connection.recv(1 << 12)
                    if not chunk or len(data) > 1 << 12:
                        raise ConnectionError("not a worker")
                    data += chunk
                hello = parse_messages(data)[0][0]
                if hello[:2] != ["hello", self.token]:
                    raise ConnectionError("not this worker")
                # Its own pid: a venv's python.exe is a launcher, with the worker as its child.
                shared = self.server_socket.share(int(hello[2]))
                connection.sendall(b"%d\n%s" % (len(shared), shared))
                connection.settimeout(None)
            except (OSError, ValueError, IndexError):   # another local program, or it died
                connection.close()
                continue
            with self.lock:
                if not self.closing:
                    self.connection = connection
                    self.listener.close()
                    return connection
            connection.close()
            return None

    def terminate(self):
        with self.lock:
            connection = self.connection
        if connection is None:              # it has served nothing yet
            self.kill()
            return
        try:
            connection.sendall(encode_message("stop"))
        except OSError:
            pass

    def kill(self):
        kill_process(self.process)

    def close_lifeline(self):
        with self.lock:
            self.closing = True
            for sock in (self.listener, self.connection):
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)     # wakes a thread in accept()
                    except OSError:
                        pass
                    sock.close()


def connect_to_supervisor_windows(address):
    """In a worker a Windows supervisor started: connect, say the token, and
    return the listening socket it shares; then follow the supervisor."""
    port, token = address.split()
    link = socket.create_connection(("127.0.0.1", int(port)), timeout=WORKER_CONNECT_TIMEOUT)
    link.sendall(encode_message("hello", token, str(os.getpid())))
    data = b""
    while True:
        header, newline, rest = data.partition(b"\n")
        if newline and len(rest) >= int(header):
            break
        chunk = link.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the supervisor closed the connection")
        data += chunk
    link.settimeout(None)
    _worker["link"] = link
    threading.Thread(target=follow_supervisor_windows, args=(link, rest[int(header):]),
                     name="runserver-supervisor-watch", daemon=True).start()
    return socket.fromshare(rest[:int(header)])


def follow_supervisor_windows(link, data):
    """In a worker, the Windows way: "stop" is the SIGTERM of POSIX (inner_run()
    stops gracefully); the end of the connection means the supervisor is gone."""
    while True:
        messages, data = parse_messages(data)
        if ["stop"] in messages:
            signal.raise_signal(signal.SIGTERM)
        try:
            chunk = link.recv(1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            os._exit(1)
        data += chunk


def run_template():
    """The template's entry, in a process the supervisor started as it starts
    a worker: import the library modules the supervisor names, then fork a
    worker whenever it asks.  Returns only in a forked worker, which goes on
    to read the command line and start as a started worker does."""
    channel = socket.socket(fileno=int(os.environ.pop(ENV_TEMPLATE_FD)))
    # Ctrl-C and SIGTERM are for the supervisor and the worker: the template
    # stays to report how its worker exits, and goes when the supervisor says.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    put_working_directory_first()          # as run() does, after main()'s forget_own_directory()
    Template(channel).serve()


class Template:
    """A template process: its preloaded modules and the workers it forked.

    It answers the supervisor's "preload NAME..." and "fork RESTARTS" (with
    the worker's descriptors attached) and reports what its workers did; see
    Supervisor.on_template_message()."""

    def __init__(self, channel):
        self.channel = channel
        self.received, self.fds = b"", []   # what came and is not used yet
        self.files = {}                     # file of each module -> stat_key() when imported
        self.attempted = set()              # names it tried to import
        self.failed = set()                 # names whose import failed
        self.thread_origins = {}            # thread -> the module whose import started it
        self.workers = set()                # pids of its workers not yet reaped
        self.refused = False                # it said "off": it only reaps now

    def serve(self):
        """Answer the supervisor until it is gone; return in a forked worker."""
        self.wakeup, self.wakeup_end = socket.socketpair()
        self.wakeup_end.setblocking(False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wakeup_end.fileno())      # a worker's exit wakes select()
        while True:
            readable = select.select([self.channel, self.wakeup], [], [])[0]
            if self.wakeup in readable:
                self.wakeup.recv(4096)
                self.reap()
            if self.channel in readable:
                for fields in self.receive():
                    if fields[0] == "preload":
                        self.preload(fields[1:])
                    elif fields[0] == "fork" and self.fork(int(fields[1])) == 0:
                        return

    def receive(self):
        """The messages that came from the supervisor; exit once it is gone."""
        data, fds, _, _ = socket.recv_fds(self.channel, 1 << 16, 8)
        if not data:
            os._exit(0)                 # its workers see their lifeline end too
        self.fds += fds
        messages, self.received = parse_messages(self.received + data)
        return messages

    def send(self, *fields):
        try:
            self.channel.sendall(encode_message(*fields))
        except OSError:
            os._exit(0)

    def preload(self, names):
        """Import `names` in order, skipping those that fail and their
        submodules, then say "ready"; say "off" instead
        if this process may no longer fork: a module started a thread, or went
        on without a project module it tried to import (any such import fails
        here: a template never holds project code)."""
        if self.refused:
            return
        since_ns = time.time_ns() - MTIME_SLACK_NS
        library_paths()                 # its imports, before the blocker is in their way
        blocker = ProjectImportBlocker()
        sys.meta_path.insert(0, blocker)
        try:
            for name in names:
                parts = name.split(".")
                if name in sys.modules or name in self.attempted or any(
                        ".".join(parts[:end]) in self.failed for end in range(1, len(parts))):
                    continue
                self.attempted.add(name)
                blocked, threads = len(blocker.blocked), threading.active_count()
                before = set(sys.modules)
                try:
                    importlib.import_module(name)
                    failed_on_block = 0
                except BaseException as exc:        # SystemExit too: skip it
                    failed_on_block = int(any(isinstance(cause, ProjectImportBlocked)
                                              for cause in exception_and_causes(exc)))
                    self.failed.add(name)
                    forget_orphans(set(sys.modules) - before)
                if len(blocker.blocked) - blocked > failed_on_block:
                    return self.refuse(
                        "importing %s imports %s, a module of this project, and goes on "
                        "without it here" % (name, blocker.blocked[blocked]))
                if threading.active_count() > threads:
                    for thread in threading.enumerate():
                        self.thread_origins.setdefault(thread, name)
        finally:
            sys.meta_path.remove(blocker)
        for thread in threading.enumerate():
            if thread is not threading.current_thread():
                return self.refuse("importing %s starts a thread (%s), and a process with "
                                   "threads cannot be forked safely"
                                   % (self.thread_origins.get(thread, "a library"), thread.name))
        self.record_files(since_ns)
        import gc
        gc.collect()
        if hasattr(gc, "freeze"):       # workers share these pages and never scan them
            gc.freeze()
        self.send("ready")

    def refuse(self, reason):
        self.refused = True
        self.send("off", reason)

    def record_files(self, since_ns):
        """Remember the file of every module and its stat_key(); a file
        modified since `since_ns` may be newer than what was imported, and
        counts as changed from the start."""
        now = time.time_ns()
        for module in list(sys.modules.values()):
            path = module_source(module)
            if path is not None and os.path.abspath(path) not in self.files:
                key = stat_key(path)
                self.files[os.path.abspath(path)] = () if key and since_ns < key[0] <= now else key

    def fork(self, restarts):
        """Fork a worker with the descriptors that came with the request,
        unless a file imported here has changed since (then say "stale").
        Return 0 in the worker."""
        fds, self.fds = self.fds[:4], self.fds[4:]
        stale = [path for path, key in self.files.items() if stat_key(path) != key]
        pid = None if stale else fork_from_template(self, fds, restarts)
        if pid is None:
            for fd in fds:
                os.close(fd)
            self.send("stale", *stale)
        elif pid:
            self.workers.add(pid)
            self.send("forked", str(pid))
        return pid

    def reap(self):
        for pid in list(self.workers):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.workers.discard(pid)
                self.send("exited", str(pid), str(os.waitstatus_to_exitcode(status)))


class ProjectImportBlocked(ImportError):
    """An import of a project module in a template, which never holds one."""


class ProjectImportBlocker:
    """A meta path finder, first on sys.meta_path while a template preloads:
    importing a project module (see is_library_spec()) raises
    ProjectImportBlocked.  `blocked` lists them, so that a module that caught
    the error and went on without can be told from one that failed."""

    def __init__(self):
        self.blocked = []

    def find_spec(self, name, path=None, target=None):
        for finder in list(sys.meta_path):
            find_spec = getattr(finder, "find_spec", None)
            spec = None if finder is self or find_spec is None else find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if not is_library_spec(spec):
            self.blocked.append(name)
            raise ProjectImportBlocked("%s is the project's: not preloaded" % name, name=name)
        return spec


def forget_orphans(names):
    """Take out of sys.modules those of `names` whose package is not there any
    more (a failed import took it out): importing the package again would make
    a new one, to which they would not be bound."""
    for name in names:
        parts = name.split(".")
        if any(".".join(parts[:end]) not in sys.modules for end in range(1, len(parts))):
            del sys.modules[name]


def exception_and_causes(exc):
    """An exception and those it was raised from or while handling."""
    chain = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def can_fork_worker():
    """Whether the first worker may be forked rather than started: when this
    file is the program itself, so that no user code has run, with no other
    thread, and not on macOS, whose system libraries forbid a fork without
    an exec."""
    if not (hasattr(os, "fork") and hasattr(signal, "pthread_sigmask")
            and sys.platform != "darwin" and is_the_program()):
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1     # threads of C code too
    except OSError:
        return threading.active_count() == 1


def can_warm_reload():
    """Whether workers may be forked from a template: where fork works without
    an exec (not macOS), with descriptors passed over unix sockets, when this
    file is the program (the template runs it as a worker does), and under no
    debugger or profiler."""
    return (hasattr(os, "fork") and hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")
            and sys.platform != "darwin" and is_the_program()
            and sys.gettrace() is None and sys.getprofile() is None)


def fork_first_worker(server, watchlist, warm):
    """Fork the first worker: it starts at once, with the modules and the parsed
    command line at hand, where a new interpreter takes some 50 ms to get there.
    Return (Worker, signal mask) in the supervisor, or None if the fork
    failed; in the worker return None, with the ENV_* variables set as a
    started worker finds them."""
    lifeline_end, lifeline = os.pipe()
    report, report_end = os.pipe()
    for stream in (sys.stdout, sys.stderr):     # or the worker would write it again
        if stream is not None:
            stream.flush()
    # Ctrl-C and SIGTERM wait until the supervisor has its handlers: the
    # worker may print the banner before that, and a script may then stop it.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM))
    try:
        pid = os.fork()
    except OSError:                     # the worker is started instead
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in (lifeline_end, lifeline, report, report_end):
            os.close(fd)
        return None
    if pid:
        os.close(lifeline_end)
        os.close(report_end)
        return Worker(lifeline, report, ForkedProcess(pid)), mask
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # a worker leaves Ctrl-C to the supervisor
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(lifeline)
    os.close(report)
    close_inherited_descriptors()
    listen_fd, watchlist_fd = os.dup(server.socket.fileno()), os.dup(watchlist.fileno())
    server.owns_socket_file = False     # the supervisor's: close this copy, keep the file
    server.server_close()
    watchlist.close()
    os.environ.update(worker_environment((listen_fd, lifeline_end, report_end, watchlist_fd),
                                         0, warm))
    if workers_import_runserver():      # the app's `import runserver` finds this module
        sys.modules.setdefault("runserver", sys.modules[__name__])
    return None


def fork_from_template(template, fds, restarts):
    """Fork a worker from a template: its pid, None if the fork failed, 0 in
    the worker (where Ctrl-C stays ignored until inner_run() takes it)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    import warnings
    with warnings.catch_warnings():
        # Python 3.12+ warns of a fork with threads: the native ones libraries
        # start when loaded (numpy's OpenBLAS) stop for a fork, Python's are refused.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            pid = os.fork()
        except OSError:
            return None
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for sock in (template.channel, template.wakeup, template.wakeup_end):
        sock.close()
    _preloaded.update(template.files)
    os.environ.update(worker_environment(fds, restarts, True))
    return 0


def close_inherited_descriptors():
    """In a forked worker: close what the supervisor inherited from its own
    parent, as subprocess does for a started worker.  Those are the
    inheritable descriptors past stderr; Python opens its own non-inheritable
    (PEP 446), and some object may still own them."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            fds = [int(name) for name in os.listdir(directory)]
            break
        except OSError:
            fds = []
    for fd in fds:
        try:
            if fd > 2 and os.get_inheritable(fd):
                os.close(fd)
        except OSError:                 # the listing's own descriptor, closed by now
            pass


class ForkedProcess:
    """A forked child, with what the supervisor uses of subprocess.Popen."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def wait(self):
        if self.returncode is None:
            try:
                status = os.waitpid(self.pid, 0)[1]
            except ChildProcessError:
                return self.returncode
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum):
        if self.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass


def make_watchlist():
    """The unlinked file a worker lists its watched files in: a SIGKILL leaves
    nothing behind (memfd_create on Linux spares the import of tempfile)."""
    if hasattr(os, "memfd_create"):
        try:
            return open(os.memfd_create("runserver-watchlist", os.MFD_CLOEXEC), "w+b")
        except OSError:
            pass
    import tempfile
    return tempfile.TemporaryFile()


def crash_watcher(watchlist, since_ns):
    """After a worker crash (at `since_ns`): a FileWatcher of the files it
    watched, to restart when one changes."""
    watchlist.seek(0)
    files = [line for line in os.fsdecode(watchlist.read()).splitlines() if line]
    if files:
        watcher = FileWatcher(extra_files=files, watch_modules=False, since_ns=since_ns)
    else:               # it crashed before listing them: the program and the .py files here
        watcher = FileWatcher([os.path.join(os.getcwd(), "*.py")],
                              extra_files=[os.path.abspath(sys.argv[0])], watch_modules=False,
                              since_ns=since_ns)
    return watcher


def remove_stale_bytecode(paths):
    """Remove the cached bytecode of changed source files: Python trusts a .pyc
    whose source kept its size and its mtime's second, as two quick saves can."""
    for path in paths:
        if path.endswith(".py"):
            try:
                os.remove(importlib.util.cache_from_source(path))
            except (OSError, ValueError, NotImplementedError):
                pass


def describe_exit(code):
    """A worker's exit status, in words."""
    if code is None:
        return "exited"
    if code < 0:
        try:
            return "was killed by %s" % signal.Signals(-code).name
        except ValueError:
            return "was killed by signal %d" % -code
    return "exited with status %d" % code


def kill_process(process):
    try:
        process.kill()
    except OSError:
        pass


def save_terminal():
    """The terminal's settings, to restore on exit (pdb can leave echo off)."""
    try:
        import termios
        if sys.stdin is not None and sys.stdin.isatty():
            return termios.tcgetattr(sys.stdin.fileno())
    except (ImportError, OSError, ValueError):
        pass
    return None


def restore_terminal(saved):
    if saved is not None:
        import termios
        try:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
        except (OSError, ValueError):
            pass


def watch_supervisor(fd):
    """In a worker: exit as soon as the supervisor is gone (its pipe hits EOF)."""
    def wait():
        try:
            while os.read(fd, 64):
                pass
        except OSError:
            pass
        os._exit(1)
    threading.Thread(target=wait, name="runserver-supervisor-watch", daemon=True).start()


def start_file_watcher(server, interval, include, exclude, extra_files, watchlist, since_ns,
                       template_dirs=()):
    """In a worker: poll files in a thread and stop the server for a reload;
    files modified after `since_ns` (when the app began to load) count as
    changed, and so do a forked worker's libraries modified since the template
    imported them.  With a template, report the library modules to preload."""
    watcher = FileWatcher(include, exclude, extra_files, since_ns=since_ns,
                          template_dirs=template_dirs)
    watcher.snapshot.update(_preloaded)
    if watchlist:
        def save(files):
            data = os.fsencode("\n".join(sorted(files)))
            try:
                os.ftruncate(int(watchlist), 0)
                os.pwrite(int(watchlist), data, 0)
            except OSError:
                pass
        watcher.on_files_changed = save
    elif _worker.get("link"):              # Windows: the supervisor keeps the list
        watcher.on_files_changed = lambda files: report_to_supervisor("files", *sorted(files))
    if _worker.get(ENV_WARM):
        reported = []

        def report_modules():
            names = library_modules()
            if names != reported:
                reported[:] = names
                report_to_supervisor("modules", *names)
        watcher.on_modules_changed = report_modules

    def watch():
        path = watcher.wait_for_change(interval)
        if path is not None:
            logger.info("%s changed, reloading.", path)
            remove_stale_bytecode(watcher.changed)
            server.reload_requested = True
            server.request_stop()
    threading.Thread(target=watch, name="runserver-reloader", daemon=True).start()


# ---- App loading ----------------------------------------------------------------

class AppSpecError(Exception):
    """APP does not name a WSGI application; the message says why, for a person."""


MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def load_app(spec):
    """Import the WSGI app named by `spec`: 'module', 'module:attr',
    'path/to/file.py:attr' or 'module:factory(literal, args)'.  'module' is
    its `application` or `app`, or what its create_app() or make_app() returns."""
    module_name, _, expression = spec.partition(":")
    if module_name.endswith(".py") or "/" in module_name:
        module = import_file(module_name)
    elif MODULE_NAME.fullmatch(module_name):
        module = import_module(module_name)
    else:
        raise AppSpecError('"%s" is not a module name or a path to a .py file; expected '
                           'APP like hello:app, hello or path/to/hello.py:app' % module_name)
    if not expression:
        for name in ("application", "app"):
            if callable(getattr(module, name, None)):
                return getattr(module, name)
        for name in ("create_app", "make_app"):     # Flask's factories, as FLASK_APP finds them
            if callable(getattr(module, name, None)):
                return evaluate_app_expression(module, module_name, name + "()")
        raise AppSpecError('module "%s" has no callable "application" or "app", nor a '
                           'create_app() factory; name it as %s:NAME' % (module_name, module_name))
    app = evaluate_app_expression(module, module_name, expression)
    if not callable(app):
        raise AppSpecError('"%s" is a %s, not a WSGI application (a callable)'
                           % (spec, type(app).__name__))
    return app


def import_module(name):
    """Import a module, telling a missing module from an ImportError inside it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            parent, _, attr = exc.name.rpartition(".")
            if parent and hasattr(sys.modules.get(parent), attr):     # hello.app for hello:app
                raise AppSpecError('no module named "%s"; for the attribute "%s" of "%s", '
                                   'write %s:%s' % (exc.name, attr, parent, parent, attr)) from None
            raise AppSpecError('no module named "%s" (looked in the current directory and '
                               'on sys.path)' % exc.name) from None
        raise


def import_file(path):
    """Import a .py file as a module named after it, its directory on sys.path."""
    filename = os.path.abspath(path)
    if not os.path.isfile(filename):
        raise AppSpecError('no file "%s"' % path)
    directory = os.path.dirname(filename)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = os.path.splitext(os.path.basename(filename))[0]
    spec = importlib.util.spec_from_file_location(name, filename)
    if spec is None:
        raise AppSpecError('"%s" is not a Python file' % path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


DOTTED_NAME = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)*")


def parse_factory_call(expression):
    """(attribute names, ast.Call or None) of 'a.b' or 'factory(args)'."""
    import ast
    try:
        node = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        node = None
    call = node if isinstance(node, ast.Call) else None
    target = call.func if call else node
    names = []
    while isinstance(target, ast.Attribute):
        names.insert(0, target.attr)
        target = target.value
    if not isinstance(target, ast.Name):
        raise AppSpecError('"%s" is not an attribute name or a factory call like '
                           'create_app() or create_app("dev", debug=True)' % expression)
    names.insert(0, target.id)
    return names, call


def evaluate_app_expression(module, module_name, expression):
    """Resolve 'attr', 'a.b' or 'factory(literal args)' in a module, without eval."""
    args, kwargs = [], {}
    if DOTTED_NAME.fullmatch(expression.strip()):       # the usual case: no need for ast
        names, call = expression.strip().split("."), None
    else:
        names, call = parse_factory_call(expression)
    if call:
        import ast
        try:
            args = [ast.literal_eval(arg) for arg in call.args]
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
        except ValueError:
            raise AppSpecError('the arguments of "%s" must be literals (strings, numbers, '
                               'True, None, lists...)' % expression) from None
        if any(kw.arg is None for kw in call.keywords):
            raise AppSpecError('"%s": ** arguments are not supported' % expression)
    obj = module
    for depth, name in enumerate(names):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AppSpecError('module "%s" has no attribute "%s"'
                               % (module_name, ".".join(names[:depth + 1]))) from None
    if call:
        if not callable(obj):
            raise AppSpecError('"%s" is not callable, so it cannot be called as a factory'
                               % ".".join(names))
        try:
            obj = obj(*args, **kwargs)
        except TypeError as exc:
            if exc.__traceback__.tb_next is not None:
                raise               # raised inside the factory: the user's code
            raise AppSpecError('cannot call "%s": %s' % (expression, exc)) from None
    return obj


def demo_app(environ, start_response):
    """The app served when no APP is given: proof that it works, and an echo."""
    body = environ["wsgi.input"].read()
    lines = ["runserver.py %s is working." % __version__, "",
             "You sent: %s %s%s %s" % (environ["REQUEST_METHOD"], environ["PATH_INFO"],
                                        "?" + environ["QUERY_STRING"] if environ["QUERY_STRING"] else "",
                                        environ["SERVER_PROTOCOL"])]
    lines += ["  %s: %s" % (key[5:].replace("_", "-").title(), value)
              for key, value in sorted(environ.items()) if key.startswith("HTTP_")]
    if body:
        lines += ["", "Body: %d bytes" % len(body), body[:1000].decode("utf-8", "replace")]
    lines += ["", "Serve your own app:  python runserver.py module:app [ADDRPORT]",
              "See all the options: python runserver.py --help"]
    text = "\n".join(lines) + "\n"
    if "text/html" in environ.get("HTTP_ACCEPT", ""):
        import html
        page = ("<!doctype html><meta charset=utf-8><title>runserver.py</title>"
                "<h1>It works!</h1><pre>%s</pre>\n" % html.escape(text))
        data, content_type = page.encode("utf-8"), "text/html; charset=utf-8"
    else:
        data, content_type = text.encode("utf-8"), "text/plain; charset=utf-8"
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


class AppNotRunning(Exception):
    """Raised by error_app()'s app: the real app is not running; `report` says why."""

    def __init__(self, report):
        super().__init__(report.title)
        self.report = report


def error_app(report):
    """The app served while the real one is not running (it failed to import, or
    its worker crashed): every request gets a 500 page with `report`."""
    def not_running(environ, start_response):
        raise AppNotRunning(report)
    return not_running


# ---- Frameworks --------------------------------------------------------------
# What runserver.py knows of frameworks.  An app is recognised by its class's
# name and module, never by importing a framework it has not imported itself.

def is_instance_of(app, package, class_name):
    """Whether `app` is an instance of `package`'s class `class_name`, or of a subclass."""
    return any(cls.__name__ == class_name and cls.__module__.partition(".")[0] == package
               for cls in type(app).__mro__)


def is_flask_app(app):
    return is_instance_of(app, "flask", "Flask")


def let_exceptions_through(app):
    """With --debug: have a framework that answers a view's exception with its own
    500 page let it reach the error page instead, unless the app says otherwise.
    For Flask that is PROPAGATE_EXCEPTIONS, as `flask run --debug` does for its
    debugger."""
    if is_flask_app(app):
        config = getattr(app, "config", None)
        if isinstance(config, dict) and config.get("PROPAGATE_EXCEPTIONS") is None:
            config["PROPAGATE_EXCEPTIONS"] = True


# Where apps find the connection's socket to take it over (simple-websocket,
# and so Flask-Sock and python-socketio's threading mode, look for these):
# Werkzeug's key and gunicorn's.  Nothing of theirs is imported.
SOCKET_KEYS = ("werkzeug.socket", "gunicorn.socket")
# What such an app raises once its connection is done: ConnectionError under
# Werkzeug (Flask-Sock, python-socketio), StopIteration under gunicorn.
TAKE_OVER_ENDINGS = (ConnectionError, StopIteration)


def socket_environ(sock):
    """The environ entries that hand `sock` (a TakeOverSocket) to such apps."""
    return dict.fromkeys(SOCKET_KEYS, sock)


def is_django_app(app):
    """Whether `app` is Django's WSGI handler (get_wsgi_application()'s)."""
    return is_instance_of(app, "django", "WSGIHandler")


def django_project():
    """(settings, app registry) of the Django project that the app's import set
    up, or None if it set none up."""
    apps = getattr(sys.modules.get("django.apps"), "apps", None)
    return (sys.modules["django.conf"].settings, apps) if getattr(apps, "ready", False) else None


def serve_django_static_files(app):
    """Wrap a Django app in Django's own static files handler, as `manage.py
    runserver` does when DEBUG is on and django.contrib.staticfiles is installed;
    return any other app as it is."""
    if not is_django_app(app) or getattr(app, "handles_files", False):     # wrapped already
        return app
    project = django_project()
    if not (project and project[0].DEBUG
            and project[1].is_installed("django.contrib.staticfiles")):
        return app
    handlers = importlib.import_module("django.contrib.staticfiles.handlers")
    try:
        return handlers.StaticFilesHandler(app)
    except sys.modules["django.core.exceptions"].ImproperlyConfigured as exc:
        logger.warning("Not serving static files: %s", exc)
        return app


def template_directories(app):
    """The template directories the app's framework knows of: Flask's template
    folders (the app's and its blueprints'), Django's TEMPLATES DIRS and its
    installed apps' template directories."""
    if is_flask_app(app):
        return flask_template_folders(app)
    if is_django_app(app) and django_project():
        return django_template_directories(*django_project())
    return []


def flask_template_folders(app):
    folders = []
    blueprints = getattr(app, "blueprints", None)
    for owner in [app] + list(blueprints.values() if isinstance(blueprints, dict) else []):
        folder, root = getattr(owner, "template_folder", None), getattr(owner, "root_path", None)
        if isinstance(folder, (str, os.PathLike)) and isinstance(root, str):
            folders.append(os.path.join(root, folder))
    return folders


def django_template_directories(settings, apps):
    directories = []
    for engine in getattr(settings, "TEMPLATES", None) or []:
        if not isinstance(engine, dict):
            continue
        directories += [os.fspath(path) for path in engine.get("DIRS") or []
                        if isinstance(path, (str, os.PathLike))]
        if engine.get("APP_DIRS"):          # Django's own backends' names for them
            name = "jinja2" if str(engine.get("BACKEND", "")).endswith("Jinja2") else "templates"
            directories += [os.path.join(config.path, name) for config in apps.get_app_configs()]
    return directories


def django_checks():
    """Django's system checks, as `manage.py check` runs them, then a look for
    unapplied migrations; return (whether no check failed, their report).
    Django's modules are the project's own, taken as serve_django_static_files()
    takes them: this file imports no framework."""
    management = importlib.import_module("django.core.management")
    output = io.StringIO()
    try:
        management.call_command("check", stdout=output, stderr=output, no_color=True)
        passed = True
    except management.base.SystemCheckError as exc:
        output.write(str(exc))
        passed = False
    except Exception as exc:       # the project's own code, imported by a check
        output.write("Django's system checks failed:\n"
                     + build_report(exc, variables=False).text)
        passed = False
    report = [output.getvalue().strip()]
    try:
        apps = django_unapplied_migrations()
    except Exception as exc:
        report.append("Warning: cannot look for unapplied migrations: %s"
                      % escape_control(str(exc)))
    else:
        if apps:
            count = sum(apps.values())
            report.append("Warning: %d migration%s not applied yet (%s): the project may fail "
                          "until you run python manage.py migrate." % (
                              count, " is" if count == 1 else "s are", ", ".join(sorted(apps))))
    return passed, "\n".join(line for line in report if line)


def django_unapplied_migrations():
    """{app label: how many of its migrations the default database lacks}, empty
    when the project has no database."""
    db = importlib.import_module("django.db")
    executor_module = importlib.import_module("django.db.migrations.executor")
    connection = db.connections[db.DEFAULT_DB_ALIAS]
    try:
        executor = executor_module.MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except sys.modules["django.core.exceptions"].ImproperlyConfigured:     # no DATABASES
        return {}
    finally:
        connection.close()
    return collections.Counter(migration.app_label for migration, _ in plan)


def start_framework_checks():
    """In a worker whose app set up a Django project: print Django's system
    checks and unapplied migrations, as manage.py runserver does at each
    start, from a thread, so that serving does not wait for them."""
    if django_project():
        threading.Thread(target=lambda: print(django_checks()[1], file=sys.stderr, flush=True),
                         name="runserver-django-checks", daemon=True).start()


# ---- Settings -------------------------------------------------------------------
# Each option comes from the first of: the command line, its RUNSERVER_* variable
# in the environment, that variable in a .env file, the default.  One function,
# resolve_settings(), decides, and remembers where each value came from.

OPTION_VARIABLE_PREFIX = "RUNSERVER_"     # RUNSERVER_RELOAD_INTERVAL sets --reload-interval
ENV_FILE_OPTIONS = ("env_file", "no_env_file")  # these only from the command line and environment
# The .env syntax, compiled when a .env file is first read (re caches them),
# not at every worker's start.
DOTENV_ASSIGNMENT = r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*="
DOTENV_DOUBLE_QUOTED = r'(?s)((?:[^"\\]|\\.)*)"'
DOTENV_SINGLE_QUOTED = r"([^']*)'"
DOTENV_AFTER_VALUE = r"[ \t]*(?:#.*)?"
DOTENV_SUBSTITUTION = r"(?s)\\(.)|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}"  # \x, ${X:-y}
DOTENV_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "'": "'", "\\": "\\", "$": "$"}
BOOLEAN_WORDS = {"1": True, "true": True, "yes": True, "on": True,
                 "0": False, "false": False, "no": False, "off": False, "": False}


def parse_dotenv(text, lookup):
    """Read the text of a .env file: yield (line number, name, value) for each
    variable, (line number, None, what is wrong) for each line it cannot read.
    lookup(name) is ${name}'s value, or None if it has none."""
    text = text.replace("\r\n", "\n")
    position, number = 0, 1
    while position < len(text):
        end = text.find("\n", position)
        end = len(text) if end < 0 else end
        line = text[position:end]
        assignment = re.match(DOTENV_ASSIGNMENT, line)
        value = line[assignment.end():] if assignment else ""
        value_end, problem = end, None
        if not line.strip() or line.lstrip().startswith("#"):
            pass
        elif assignment is None:
            problem = 'expected NAME=value, not "%s"' % escape_control(line[:60])
        elif value.lstrip(" \t")[:1] in ("'", '"'):     # quoted: may span lines
            quote_at = end - len(value.lstrip(" \t"))
            value, closing_end, problem = dotenv_quoted(text, quote_at, number)
            if problem is None:
                value_end = closing_end
                if text[quote_at] == '"':
                    value = dotenv_substitute(value, lookup, escapes=True)
                yield number, assignment.group(1), value
        else:                                           # unquoted: up to a " #" comment
            value = re.split(r"[ \t]#", value, maxsplit=1)[0].strip()
            yield number, assignment.group(1), dotenv_substitute(value, lookup, escapes=False)
        if problem:                                     # and go on with the next line
            yield number, None, problem
        number += text.count("\n", position, value_end) + 1
        position = value_end + 1


def dotenv_quoted(text, start, number):
    """The value quoted from text[start] on (line `number`), where the line of its
    closing quote ends, and what is wrong (None if nothing)."""
    quote = text[start]
    closed = re.compile(DOTENV_DOUBLE_QUOTED if quote == '"' else DOTENV_SINGLE_QUOTED).match(
        text, start + 1)
    if closed is None:
        return None, None, "the %s quote is never closed" % quote
    line_end = text.find("\n", closed.end())
    line_end = len(text) if line_end < 0 else line_end
    rest = text[closed.end():line_end]
    if not re.fullmatch(DOTENV_AFTER_VALUE, rest):
        closing = number + text.count("\n", start, closed.end())
        return None, None, 'unexpected "%s" after the closing quote%s' % (
            escape_control(rest.strip()[:60]),
            " (on line %d)" % closing if closing != number else "")
    return closed.group(1), line_end, None


def dotenv_substitute(value, lookup, escapes):
    """${NAME} and ${NAME:-default} replaced, and with `escapes` \\n, \\" and the like."""
    def replace(match):
        escape, name, default = match.groups()
        if escape is not None:
            return DOTENV_ESCAPES.get(escape, match.group(0)) if escapes else match.group(0)
        found = lookup(name) or ""
        return default if default is not None and not found else found
    return re.sub(DOTENV_SUBSTITUTION, replace, value)


def read_env_files(paths, environ):
    """Read the .env files that exist among `paths`, each winning over those
    after it and the environment over all.  Return (variables, counts,
    warnings): {name: (value, "file:line")} for the variables the environment
    does not set, and [(path, how many variables it sets)]."""
    variables, counts, warnings = {}, [], []
    for path in paths:
        try:
            with open(path, encoding="utf-8-sig", errors="replace") as file:
                text = file.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            warnings.append("cannot read %s: %s" % (path, exc.strerror or exc))
            continue
        own = {}

        def lookup(name):
            for values in (environ, variables, own):
                if name in values:
                    return values[name] if values is environ else values[name][0]
            return None
        for number, name, value in parse_dotenv(text, lookup):
            if name is None:
                warnings.append("%s:%d: %s; the line is ignored" % (path, number, value))
            elif "\0" in value:
                warnings.append("%s:%d: %s has a NUL character; the line is ignored"
                                % (path, number, name))
            else:
                own[name] = (value, "%s:%d" % (path, number))
        used = [name for name in own if name not in environ and name not in variables]
        variables.update((name, own[name]) for name in used)
        counts.append((path, len(used)))
    return variables, counts, warnings


def load_env_files(paths):
    """Set the variables of the .env files among `paths` in os.environ, where
    the environment does not set them; warn of the lines that cannot be read.
    Return [(path, how many variables it set)], for the banner."""
    variables, counts, warnings = read_env_files(paths, os.environ)
    for warning in warnings:
        print_warning(warning)
    for name, (value, _) in variables.items():
        os.environ[name] = value
    return counts


class Settings:
    """The options, as attributes named after their argparse dests, and in
    `sources` where each value came from: "default", "command line", or
    the variable that set it ("RUNSERVER_DEBUG in .env:3")."""

    def __init__(self):
        self.sources = {}
        self.labels = {}            # dest -> how --check names it: --reload-interval, APP
        self.env_files = []         # the .env files to read, the first winning
        self.warnings = []

    def set(self, dest, value, source):
        setattr(self, dest, value)
        self.sources[dest] = source

    def given(self, dest):
        """Whether the option `dest` was set, rather than left to its default."""
        return self.sources[dest] != "default"

    def blame(self, dest, message):
        """`message`, about option `dest`, naming the variable that set it if one did."""
        if self.sources[dest] in ("default", "command line"):
            return message
        return "%s: %s" % (self.sources[dest], message)

    def validated(self, dest, parse, *args):
        """parse(*args), with the variable that set `dest` named in its UsageError."""
        try:
            return parse(*args)
        except UsageError as exc:
            raise UsageError(self.blame(dest, str(exc))) from None


def option_variable(action):
    """The variable of an argparse option: RUNSERVER_RELOAD_INTERVAL for
    --reload-interval, RUNSERVER_APP for APP."""
    long_name = next((name[2:] for name in action.option_strings if name.startswith("--")),
                     action.dest)
    return OPTION_VARIABLE_PREFIX + long_name.upper().replace("-", "_")


def option_actions(parser):
    """The parser's options and positionals, without --help and --version.
    (argparse keeps them in a private list, which Django's call_command reads too.)"""
    return [action for action in parser._actions if action.default != argparse.SUPPRESS]


def parse_variable(action, text):
    """The value of an option set by a variable, as its flag would give it;
    ValueError says what is wrong, in argparse's words."""
    def convert(item):
        if action.type is None:
            return item
        try:
            return action.type(item)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None
        except (TypeError, ValueError):
            raise ValueError("invalid %s value: %r"
                             % (getattr(action.type, "__name__", "its"), item)) from None
    word = BOOLEAN_WORDS.get(text.strip().lower())
    if action.nargs == 0:           # a switch: --noreload, --debug/--no-debug
        if word is None:
            raise ValueError('"%s" is not one of 1, true, yes, on, 0, false, no, off' % text)
        return word if action.const is None else action.const if word else action.default
    if action.nargs == "?" and action.option_strings and word is not None:
        return action.const if word else None       # --open [PATH]: RUNSERVER_OPEN=1 or =/admin/
    if isinstance(action.default, list):            # repeatable: values apart by spaces
        return [convert(item) for item in text.split()]
    return convert(text)


def order_positionals(app, addrport):
    """APP and ADDRPORT as given: a lone one that looks like ADDRPORT is
    ADDRPORT; the two the wrong way round are a UsageError saying the right way."""
    if app is not None and looks_like_addrport(app):
        if addrport is None:
            return None, app
        if not looks_like_addrport(addrport):
            raise UsageError("APP comes before ADDRPORT; did you mean: %s %s" % (addrport, app))
    return app, addrport


def resolve_settings(parser, argv=None, environ=None):
    """Every option of `parser`, each from the first of: the command line
    `argv`, its RUNSERVER_* variable in `environ` (default os.environ), in a
    .env file, its default; FLASK_APP names the app if nothing else does.
    Return a Settings; a bad value is a UsageError that names its variable."""
    environ = os.environ if environ is None else environ
    actions = option_actions(parser)
    given = parser.parse_intermixed_args(      # None: not given (no option gives None)
        argv, argparse.Namespace(**dict.fromkeys(action.dest for action in actions)))
    given.app, given.addrport = order_positionals(given.app, given.addrport)
    settings = Settings()
    for action in actions:
        settings.labels[action.dest] = next(
            (name for name in action.option_strings if name.startswith("--")), action.metavar)
    env_file_options = [action for action in actions if action.dest in ENV_FILE_OPTIONS]
    for action in env_file_options:            # a .env file cannot name .env files
        resolve_option(settings, action, given, environ, {})
    settings.env_files = env_file_paths(settings)
    dotenv = read_env_files(settings.env_files, environ)[0]     # load_env_files() warns
    for action in actions:
        if action not in env_file_options:
            resolve_option(settings, action, given, environ, dotenv)
    if settings.app is None and environ.get("FLASK_APP"):
        settings.set("app", environ["FLASK_APP"], "FLASK_APP in the environment")
    elif settings.app is None and dotenv.get("FLASK_APP", ("",))[0]:
        settings.set("app", dotenv["FLASK_APP"][0], "FLASK_APP in %s" % dotenv["FLASK_APP"][1])
    settings.warnings += unknown_variable_warnings(actions, environ, dotenv)
    return settings


def resolve_option(settings, action, given, environ, dotenv):
    """Set one option in `settings` from the command line, the environment,
    the .env files' `dotenv` variables or its default, the first that has it."""
    variable = option_variable(action)
    if getattr(given, action.dest) is not None:
        settings.set(action.dest, getattr(given, action.dest), "command line")
    elif variable in environ or variable in dotenv:
        text, where = (environ[variable], "the environment") if variable in environ \
            else dotenv[variable]
        source = "%s in %s" % (variable, where)
        try:
            settings.set(action.dest, parse_variable(action, text), source)
        except ValueError as exc:
            raise UsageError("%s: %s" % (source, exc)) from None
    else:
        default = action.default
        settings.set(action.dest, list(default) if isinstance(default, list) else default,
                     "default")


def env_file_paths(settings):
    """The .env files to read, the first winning: --env-file's, the last given
    first, then ENV_FILES; none with --no-env-file.  A missing --env-file is
    a UsageError."""
    if settings.no_env_file:
        return []
    for path in settings.env_file:
        if not os.path.isfile(path):
            raise UsageError(settings.blame("env_file", '--env-file "%s": %s' % (
                path, "not a file" if os.path.exists(path) else "no such file")))
    paths = []
    for path in list(reversed(settings.env_file)) + list(ENV_FILES):
        if path not in paths:
            paths.append(path)
    return paths


def unknown_variable_warnings(actions, environ, dotenv):
    """A warning for each RUNSERVER_* variable that no option reads, and for
    the .env files' settings of --env-file and --no-env-file."""
    known = {option_variable(action): action for action in actions}
    warnings = []
    for name in sorted(set(environ) | set(dotenv)):
        if not name.startswith(OPTION_VARIABLE_PREFIX):
            continue
        where = "the environment" if name in environ else dotenv[name][1]
        if name not in known:
            import difflib
            suffixes = [known_name[len(OPTION_VARIABLE_PREFIX):] for known_name in known]
            hint = "ADDRPORT" if name in ("RUNSERVER_PORT", "RUNSERVER_HOST") else (
                difflib.get_close_matches(name[len(OPTION_VARIABLE_PREFIX):], suffixes, 1)
                or [None])[0]
            warnings.append("%s in %s is not an option's variable; %s" % (
                name, where, "did you mean %s%s?" % (OPTION_VARIABLE_PREFIX, hint) if hint
                else "see --help"))
        elif known[name].dest in ENV_FILE_OPTIONS and name not in environ:
            warnings.append("%s in %s has no effect: only the command line and the "
                            "environment choose the .env files" % (name, where))
    return warnings


def print_settings(settings):
    """--check's table: each option, its value and where it came from."""
    def shown(value):
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, list):
            return " ".join(map(str, value)) or "-"
        if isinstance(value, float):
            return "%g" % value
        return "-" if value is None or value == "" else str(value)
    rows = [(label, shown(getattr(settings, dest)), settings.sources[dest])
            for dest, label in settings.labels.items()]
    widths = [max(len(row[column]) for row in rows) for column in (0, 1)]
    print("Settings, and where each comes from:")
    for label, value, source in rows:
        print("  %-*s  %-*s  %s" % (widths[0], label, widths[1], value, source))
    sys.stdout.flush()


# ---- Command line -----------------------------------------------------------------

naiveip_re = re.compile(r"""(?:
(?P<addr>
    (?P<ipv4>\d{1,3}(?:\.\d{1,3}){3}) |         # IPv4 address
    \[(?P<ipv6>[a-fA-F0-9:.]+)\] |               # IPv6 address, in brackets
    (?P<fqdn>[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*)  # FQDN
):)?(?P<port>\d+)""", re.X | re.ASCII)      # Django's name; used with fullmatch

ERRNO_MESSAGES = {
    errno.EACCES: "You don't have permission to access that port.",
    errno.EADDRINUSE: "That port is already in use.",
    errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
    errno.EAFNOSUPPORT: "This system does not support that address family (no IPv6?).",
}

COLORS = {2: "", 3: "\x1b[32m", 304: "\x1b[36m", 4: "\x1b[33m", 5: "\x1b[1;31m"}


class UsageError(Exception):
    """A mistake on the command line: one line for the user, exit status 2."""


def print_error(message):
    """The one way a mistake is told: `Error: message`, on stderr."""
    print("Error: %s" % message, file=sys.stderr, flush=True)


def print_warning(message):
    print("Warning: %s" % message, file=sys.stderr, flush=True)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not the whole usage text."""

    def error(self, message):
        print_error("%s (see --help)" % message)
        self.exit(USAGE_EXIT_CODE)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter given the width it would compute, so that it does
    not import shutil for it: 3 ms of every start, reloader workers included."""

    def __init__(self, prog, **kwargs):
        if kwargs.get("width") is None:
            kwargs["width"] = terminal_columns() - 2
        super().__init__(prog, **kwargs)


def terminal_columns():
    """shutil.get_terminal_size().columns: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def add_arguments(parser):
    """The command line, with Django's names where Django has the option."""
    parser.add_argument("app", nargs="?", metavar="APP",
                        help="the WSGI app: module:attr, module (then 'application' or 'app'), "
                             "path/to/file.py:attr or module:factory('literal', arg=1); "
                             "none serves a demo app")
    parser.add_argument("addrport", nargs="?", metavar="ADDRPORT",
                        help="PORT, IPv4:PORT, [IPv6]:PORT, FQDN:PORT, 0:PORT (all "
                             "interfaces) or unix:/path/to.sock (default 127.0.0.1:%d)"
                             % DEFAULT_PORT)
    parser.add_argument("--version", action="version", version="runserver.py " + __version__)
    server = parser.add_argument_group("server")
    server.add_argument("--ipv6", "-6", action="store_true", help="use an IPv6 address (::1)")
    server.add_argument("--nothreading", action="store_true",
                        help="one request at a time, without keep-alive")
    server.add_argument("--static", action="append", default=[], metavar="URL_PREFIX=DIRECTORY",
                        help="serve DIRECTORY's files under URL_PREFIX (repeatable)")
    server.add_argument("--nostatic", action="store_true",
                        help="do not serve a Django app's static files (served when DEBUG "
                             "is on and django.contrib.staticfiles is installed)")
    server.add_argument("--cert", metavar="FILE",
                        help="serve HTTPS with this certificate (PEM), or with 'adhoc' a "
                             "self-signed one for localhost that openssl makes, kept in your "
                             "cache directory")
    server.add_argument("--key", metavar="FILE", help="the private key for --cert (PEM)")
    server.add_argument("--allowed-hosts", metavar="HOST[,HOST...]",
                        help="Host header values to answer ('*' any, '.example.test' a domain "
                             "and its subdomains); default: local names when bound to loopback")
    server.add_argument("--proxy-headers", action="store_true",
                        help="behind a proxy or a tunnel: take the client's address, scheme "
                             "and host from X-Forwarded-For, -Proto, -Host, -Port and "
                             "Forwarded, when a proxy of --forwarded-allow-ips sends them")
    server.add_argument("--forwarded-allow-ips", metavar="ADDRESS[,ADDRESS...]",
                        help="the proxies --proxy-headers trusts: addresses, networks like "
                             "10.0.0.0/8, 'unix' for unix-socket peers, or '*' for any "
                             "(default: %s)" % ",".join(DEFAULT_FORWARDED_ALLOW_IPS))
    server.add_argument("--debug", action=argparse.BooleanOptionalAction, default=None,
                        help="an error page with the traceback, source, local variables and "
                             "request for a 500 (default: on for loopback addresses and "
                             "unix sockets)")
    server.add_argument("--editor", metavar="URL_TEMPLATE",
                        help="make the error page's file:line links that open your editor, "
                             "like 'vscode://file/{path}:{line}'")
    server.add_argument("--root-path", metavar="PREFIX", default="",
                        help="serve the app under this URL path, as if mounted there "
                             "(SCRIPT_NAME); other paths get a 404 that says where it is")
    server.add_argument("--open", nargs="?", const="/", metavar="PATH",
                        help="open the web browser at PATH (default /) once the server is up")
    reloader = parser.add_argument_group("reloader")
    reloader.add_argument("--noreload", action="store_true", help="do not use the autoreloader")
    reloader.add_argument("--no-warm", action="store_true",
                          help="start each new worker as a new interpreter, rather than fork it "
                               "from a process that keeps the libraries imported")
    reloader.add_argument("--no-livereload", action="store_true",
                          help="do not add the live-reload script to the pages browsers open "
                               "(it reloads them after a reload, swaps changed --static CSS in)")
    reloader.add_argument("--reload-interval", type=positive_float, metavar="SECONDS",
                          default=DEFAULT_RELOAD_INTERVAL,
                          help="seconds between two looks at the files (default %g)"
                               % DEFAULT_RELOAD_INTERVAL)
    reloader.add_argument("--reload-include", action="append", default=[], metavar="PATH_OR_GLOB",
                          help="also watch these files, directories or globs like "
                               "'assets/**/*.scss' (repeatable; templates directories "
                               "are watched already)")
    reloader.add_argument("--reload-exclude", action="append", default=[], metavar="GLOB",
                          help="do not watch files matching GLOB (repeatable)")
    settings = parser.add_argument_group("settings and checks")
    settings.add_argument("--env-file", action="append", default=[], metavar="FILE",
                          help="also read variables from FILE, before %s (repeatable; the "
                               "last given wins)" % " and ".join(ENV_FILES))
    settings.add_argument("--no-env-file", action="store_true",
                          help="read no .env file, not even %s" % " or ".join(ENV_FILES))
    settings.add_argument("--check", action="store_true",
                          help="check the settings and import the app, then exit without "
                               "serving: 0 if all is well, 1 if the app fails, 2 for a bad option")
    settings.add_argument("--skip-checks", action="store_true",
                          help="skip Django's system checks and its unapplied-migrations warning")
    output = parser.add_argument_group("output")
    output.add_argument("--quiet", "-q", action="store_true", help="no access log")
    output.add_argument("--no-color", action="store_true",
                        help="no colours (also when NO_COLOR is set or not on a terminal)")
    output.add_argument("--log-config", metavar="FILE",
                        help="configure logging from FILE: a .json file through "
                             "logging.config.dictConfig, any other through fileConfig (the "
                             "'runserver' logger; access records carry %s as fields)"
                             % ", ".join(ACCESS_FIELDS))
    limits = parser.add_argument_group("limits", "sizes take K, M or G, as in 64K or 10M")
    for name, kind, unit, what in (
            ("max_request_line", parse_size, "BYTES", "a longer request line is answered 414"),
            ("max_header_size", parse_size, "BYTES", "a larger header block is answered 431"),
            ("max_headers", int, "N", "more header lines are answered 431"),
            ("max_body", parse_size, "BYTES", "a larger request body is answered 413"),
            ("header_timeout", positive_float, "SECONDS", "time to send a whole request head"),
            ("keepalive_timeout", positive_float, "SECONDS", "idle time between two requests"),
            ("body_timeout", positive_float, "SECONDS",
             "silence allowed inside a request body, or in a response the client does not read"),
            ("shutdown_timeout", positive_float, "SECONDS",
             "time running requests get to finish on Ctrl-C, SIGTERM or a reload")):
        default = shown = getattr(Limits, name)
        if unit == "BYTES":                 # 65536 -> 64K, 1 << 30 -> 1G
            shown = next("%d%s" % (default >> shift, suffix) for shift, suffix
                         in ((30, "G"), (20, "M"), (10, "K"), (0, ""))
                         if not default % (1 << shift))
        limits.add_argument("--" + name.replace("_", "-"), type=kind, metavar=unit,
                            default=default, help="%s (default %s)" % (what, shown))


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("%r is not a positive number" % text)
    return value


def parse_size(text):
    """A byte count, with an optional K, M or G suffix (powers of 1024)."""
    match = re.fullmatch(r"([0-9]+)([KMG]?)i?B?", text.strip(), re.IGNORECASE)
    if match is None:
        raise argparse.ArgumentTypeError("%r is not a size like 65536, 64K, 10M or 1G" % text)
    return int(match.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[match.group(2).upper()]


def looks_like_addrport(text):
    """A lone positional is ADDRPORT, not APP, if it looks like one."""
    return bool(text[:1].isdigit() or text.startswith(("[", "unix:"))
                or re.fullmatch(r"[^:]+:[0-9].*", text))


def parse_addrport(addrport, use_ipv6):
    """Validate ADDRPORT; return (host, port, unix_socket_path, ipv6)."""
    if addrport is None:
        return (DEFAULT_HOST_IPV6 if use_ipv6 else DEFAULT_HOST), DEFAULT_PORT, None, use_ipv6
    if addrport.startswith("unix:"):
        path = addrport[len("unix:"):]
        if not path:
            raise UsageError('"unix:" needs a path, like unix:/tmp/app.sock')
        if use_ipv6:
            raise UsageError("-6/--ipv6 cannot be used with a unix socket")
        if UnixWSGIServer.address_family is None:
            raise UsageError("%s: this system has no unix domain sockets; give a port or "
                             "address:port instead." % addrport)
        return None, None, os.path.abspath(path), False
    match = naiveip_re.fullmatch(addrport)
    if match is None:
        raise UsageError('"%s" is not a valid port number or address:port pair.' % addrport)
    addr, ipv4, ipv6, fqdn, port = match.group("addr", "ipv4", "ipv6", "fqdn", "port")
    if len(port) > 5 or int(port) > 65535:
        raise UsageError('"%s" is not a valid port number: expected 0 to 65535.' % port)
    port = int(port)
    if ipv4 and any(int(octet) > 255 for octet in ipv4.split(".")):
        raise UsageError('"%s" is not a valid IPv4 address: each number must be 0 to 255.' % ipv4)
    if ipv6 is not None:
        try:
            socket.inet_pton(socket.AF_INET6, ipv6)
        except OSError:
            raise UsageError('"%s" is not a valid IPv6 address.' % ipv6) from None
        return ipv6, port, None, True
    if fqdn == "0":
        fqdn = "0.0.0.0"
    elif fqdn and re.fullmatch(r"[0-9.]+", fqdn):
        raise UsageError('"%s" is not a valid IPv4 address.' % fqdn)
    host = ipv4 or fqdn
    if host and use_ipv6:
        raise UsageError('-6/--ipv6 needs an IPv6 address like [::1]:%d, not "%s".' % (port, host))
    if not addr:
        host = DEFAULT_HOST_IPV6 if use_ipv6 else DEFAULT_HOST
    return host, port, None, use_ipv6


def handle(settings):
    """Run the server with the resolved settings; return the exit status."""
    run(**run_arguments(settings))
    return 0


def run_arguments(settings):
    """run()'s keyword arguments from resolved Settings; a bad value is a
    UsageError that names the variable it came from."""
    host, port, unix_socket, ipv6 = settings.validated(
        "addrport", parse_addrport, settings.addrport, settings.ipv6)
    app = settings.app
    if app is not None and not (":" in app or MODULE_NAME.fullmatch(app) or app.endswith(".py")):
        raise UsageError(settings.blame("app", '"%s" is not a valid APP: expected module:attr, '
                                               'module or path/to/file.py:attr' % app))
    static = settings.validated("static", parse_static, settings.static)
    if settings.cert == "adhoc" and settings.key:
        raise UsageError(settings.blame("key", "--cert adhoc makes its own key: leave out --key"))
    if settings.cert != "adhoc" and bool(settings.cert) != bool(settings.key):
        raise UsageError(settings.blame("cert" if settings.cert else "key",
                                        "--cert and --key go together: give both for HTTPS"))
    ssl_context = settings.validated("cert", make_ssl_context, settings.cert, settings.key) \
        if settings.cert else None
    if settings.editor is not None:
        settings.validated("editor", check_editor_template, settings.editor)
    root_path = settings.validated("root_path", parse_root_path, settings.root_path)
    if settings.open is not None and not settings.open.startswith("/"):
        raise UsageError(settings.blame("open", '--open "%s": expected a path like / or /admin/ '
                                                '(write --open=PATH, or --open after APP and '
                                                'ADDRPORT)' % settings.open))
    if settings.open is not None and unix_socket:
        raise UsageError(settings.blame("open", "--open needs a TCP address: a browser cannot "
                                                "open a unix socket"))
    allowed_hosts = None
    if settings.allowed_hosts is not None:
        allowed_hosts = [name.strip() for name in settings.allowed_hosts.split(",")
                         if name.strip()]
    forwarded_allow_ips = None
    if settings.forwarded_allow_ips is not None:
        if not settings.proxy_headers:
            raise UsageError(settings.blame("forwarded_allow_ips", "--forwarded-allow-ips "
                                            "names the proxies --proxy-headers trusts: add "
                                            "--proxy-headers"))
        forwarded_allow_ips = settings.validated("forwarded_allow_ips", parse_forwarded_allow_ips,
                                                 settings.forwarded_allow_ips)
    limits = Limits(**{name: getattr(settings, name) for name in (
        "max_request_line", "max_header_size", "max_headers", "max_body", "header_timeout",
        "keepalive_timeout", "body_timeout", "shutdown_timeout")})
    return dict(app=app, host=host, port=port, ipv6=ipv6, threading=not settings.nothreading,
                reload=not settings.noreload, unix_socket=unix_socket, ssl_context=ssl_context,
                static=static, limits=limits, quiet=settings.quiet, debug=settings.debug,
                allowed_hosts=allowed_hosts, reload_interval=settings.reload_interval,
                reload_include=settings.reload_include, reload_exclude=settings.reload_exclude,
                warm=not settings.no_warm, color=False if settings.no_color else None,
                livereload=not settings.no_livereload,
                root_path=root_path,
                editor=settings.editor, django_static=not settings.nostatic,
                env_files=settings.env_files, open_browser=settings.open,
                skip_checks=settings.skip_checks,
                next_free_port=not settings.given("addrport") and not unix_socket,
                proxy_headers=settings.proxy_headers, forwarded_allow_ips=forwarded_allow_ips,
                log_config=settings.log_config)


def parse_static(items):
    """--static's URL_PREFIX=DIRECTORY items as (prefix, directory) pairs."""
    static = []
    for item in items:
        prefix, equals, directory = item.partition("=")
        if not equals or not prefix.startswith("/"):
            raise UsageError('--static "%s": expected URL_PREFIX=DIRECTORY, like /static=./public'
                             % item)
        if not os.path.isdir(directory):
            raise UsageError('--static "%s": "%s" is not a directory' % (item, directory))
        static.append((prefix, directory))
    return static


def parse_forwarded_allow_ips(text):
    """--forwarded-allow-ips' list, each entry checked as ProxyTrust takes it."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    try:
        ProxyTrust(entries or [""])
    except ValueError as exc:
        raise UsageError("--forwarded-allow-ips: %s" % exc) from None
    return entries


def parse_root_path(text):
    """--root-path's PREFIX, as SCRIPT_NAME: '/app' (no slash at the end), '' for none."""
    if text and not text.startswith("/"):
        raise UsageError('--root-path "%s": expected a URL path like /app' % text)
    return text.rstrip("/")


def check(settings):
    """--check: validate the settings and print them, load the .env files and
    import the app as a worker does (Django's checks too), and serve nothing.
    Return 0, or 1 if the app fails; a bad option is a UsageError (2).  Where
    it can, the app is imported in a child process, so that an app which ends
    the process at import (os._exit(0)) fails the check as it fails a worker."""
    arguments = run_arguments(settings)
    print_settings(settings)
    if not hasattr(os, "fork"):
        return check_app(arguments)
    sys.stdout.flush()
    sys.stderr.flush()
    result, report = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(result)
        try:
            status = check_app(arguments)
        except UsageError as exc:
            print_error(exc)
            status = USAGE_EXIT_CODE
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(report, b"%d" % status)
        os._exit(status)
    os.close(report)
    with open(result, "rb") as pipe:
        said = pipe.read()
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if said:
        return int(said)
    print("Check failed: the app's import ended the process (it %s)." % describe_exit(code),
          flush=True)
    return 1


def check_app(arguments):
    """--check's import of the app and Django's checks; the status to exit with."""
    counts = load_env_files(arguments["env_files"])
    if counts:
        print(describe_env_files(counts), flush=True)
    put_working_directory_first()
    if arguments["log_config"]:             # a bad file fails the check as it fails the server
        apply_log_config(arguments["log_config"])
    spec = arguments["app"]
    try:
        app = demo_app if spec is None else load_app(spec)
    except AppSpecError as exc:
        raise UsageError(str(exc).rstrip(".") + ".") from None
    except (Exception, SystemExit) as exc:
        print(build_report(exc, variables=False).text, file=sys.stderr, end="", flush=True)
        print("Check failed: %s cannot be imported." % spec, flush=True)
        return 1
    if arguments["unix_socket"]:
        where = "unix:" + arguments["unix_socket"]
    else:
        host = arguments["host"]
        where = "%s://%s:%d%s/" % ("https" if arguments["ssl_context"] else "http",
                                   "[%s]" % host if ":" in host else host, arguments["port"],
                                   arguments["root_path"])
    print("Would serve %s at %s" % (spec or describe_app(app) or "the demo app", where))
    if not arguments["skip_checks"] and django_project():
        passed, report = django_checks()
        print(report, flush=True)
        if not passed:
            print("Check failed: Django's system checks found errors.")
            return 1
    print("Check passed.")
    return 0


def check_editor_template(template):
    """--editor: a URL template with {path} and, if it likes, {line}, nothing else."""
    try:
        editor_url(template, "/", 1)
    except (KeyError, IndexError, ValueError):
        raise UsageError("--editor %s: expected a URL template with {path} and {line}, like "
                         "'vscode://file/{path}:{line}'" % template) from None
    if "{path}" not in template:
        raise UsageError("--editor %s: the template needs {path}, like "
                         "'vscode://file/{path}:{line}'" % template)


def make_ssl_context(cert, key=None):
    """A TLS 1.2+ server context for a PEM certificate and its key (in `cert`
    too if key is None), or with cert="adhoc" a self-signed one for localhost
    (adhoc_certificate()).  Its certificate_file and certificate_fingerprint
    are the banner's.  An unreadable or mismatched pair is a UsageError."""
    import ssl
    if cert == "adhoc":
        cert = adhoc_certificate()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A peer gone without close_notify, or one close_idle_and_wait() shuts out,
    # is an ordinary end of the connection: no decode_error alert sent to it.
    context.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    for path in (cert, key) if key is not None else (cert,):
        if not os.path.isfile(path):
            raise UsageError('cannot read "%s": %s' % (
                path, "not a file" if os.path.exists(path) else "no such file"))
        if not os.access(path, os.R_OK):
            raise UsageError('cannot read "%s": permission denied' % path)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise UsageError('cannot use --cert "%s"%s: %s (the key must be the certificate\'s, '
                         "both in PEM)" % (cert, ' with --key "%s"' % key if key else "",
                                           exc.reason or exc)) from None
    context.certificate_file = cert
    context.certificate_fingerprint = certificate_fingerprint(cert)
    return context


def certificate_fingerprint(path):
    """The SHA-256 fingerprint of the first certificate in a PEM file, as
    browsers show it (AB:CD:...); None if it has none."""
    import hashlib
    import ssl
    with open(path, encoding="ascii", errors="replace") as file:
        pem = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----",
                        file.read(), re.S)
    if pem is None:
        return None
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.group())).hexdigest().upper()
    return ":".join(digest[index:index + 2] for index in range(0, len(digest), 2))


def adhoc_certificate():
    """--cert adhoc: the PEM file of a self-signed certificate for localhost,
    127.0.0.1 and ::1 and its key, in the user's cache directory, made by the
    openssl command when it is missing or near its end.  (A reloader's worker
    takes the one its supervisor checked: openssl takes some 30 ms to start.)"""
    directory = user_cache_directory()
    path = os.path.join(directory, ADHOC_CERT_FILE)
    if is_reloader_worker() and os.path.isfile(path):
        return path
    import shutil
    openssl = shutil.which("openssl")
    if openssl is None:
        raise UsageError("--cert adhoc makes its certificate with the openssl command, which "
                         "is not on PATH: install OpenSSL, or make a certificate with mkcert "
                         "(mkcert localhost 127.0.0.1 ::1) and give it as "
                         "--cert localhost+2.pem --key localhost+2-key.pem")
    try:
        found = stat_key(path)
        if found is None or not certificate_lasts(openssl, path):
            make_private_directory(directory)
            make_adhoc_certificate(openssl, directory, path, found)
    except (OSError, ValueError) as exc:
        raise UsageError("--cert adhoc: cannot make a certificate in %s: %s"
                         % (directory, getattr(exc, "strerror", None) or exc)) from None
    return path


def user_cache_directory():
    """runserver.py's directory in the user's cache: under %LOCALAPPDATA% on
    Windows, ~/Library/Caches on macOS, else $XDG_CACHE_HOME or ~/.cache."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser(r"~\AppData\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:                   # the XDG spec: a relative $XDG_CACHE_HOME is to be ignored
        base = os.environ.get("XDG_CACHE_HOME", "")
        base = base if os.path.isabs(base) else os.path.expanduser("~/.cache")
    return os.path.join(base, CACHE_DIRECTORY_NAME)


def make_private_directory(path):
    """Make `path` a directory only this user may enter (0700): another user
    who could write in it could hand the server a key of their choosing."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if hasattr(os, "getuid"):
        status = os.stat(path)
        if status.st_uid != os.getuid():
            raise ValueError("it belongs to another user; set XDG_CACHE_HOME to a "
                             "directory of yours")
        if status.st_mode & 0o077:
            os.chmod(path, 0o700)


def certificate_lasts(openssl, path):
    """Whether the certificate in `path` is good for ADHOC_RENEW_DAYS more days."""
    return run_openssl(openssl, "x509", "-checkend", str(ADHOC_RENEW_DAYS * 86400),
                       "-noout", "-in", path).returncode == 0


def run_openssl(openssl, *args):
    """Run the openssl command; its stderr is kept, a hang is a ValueError."""
    import subprocess
    try:
        return subprocess.run([openssl, *args], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=OPENSSL_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ValueError("openssl took over %ds" % OPENSSL_TIMEOUT) from None


def make_adhoc_certificate(openssl, directory, path, old):
    """Make the key and self-signed certificate in a scratch directory, then
    move the file (mode 0600) to `path` in one step, unless another server
    did first: then both use that one.  `old` is stat_key() of the file to
    renew, None if there was none."""
    import shutil
    import tempfile
    scratch = tempfile.mkdtemp(prefix=".new-", dir=directory)
    try:
        config, key, cert, pem = (os.path.join(scratch, name) for name in (
            "openssl.cnf", "key.pem", "cert.pem", ADHOC_CERT_FILE))
        with open(config, "w") as file:
            file.write(ADHOC_OPENSSL_CONFIG)
        result = run_openssl(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                             "-days", str(ADHOC_CERT_DAYS), "-config", config,
                             "-keyout", key, "-out", cert)
        if result.returncode:
            raise ValueError("openssl failed: %s" % (
                result.stderr.decode("utf-8", "replace").strip().splitlines() or ["?"])[-1])
        with open(key, "rb") as key_file, open(cert, "rb") as cert_file:
            data = key_file.read() + cert_file.read()
        with open(os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
            file.write(data)
        if old is None:
            try:
                os.link(pem, path)      # fails if another server's is there now
            except FileExistsError:
                pass
        elif stat_key(path) == old:     # else another server renewed it first
            os.replace(pem, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class LogFormatter(logging.Formatter):
    """`[27/Nov/2026 14:00:00] message`, coloured by HTTP status on a terminal."""

    def __init__(self, color):
        super().__init__("[%(asctime)s] %(message)s", "%d/%b/%Y %H:%M:%S")
        self.color = color

    def format(self, record):
        text = super().format(record)
        if not self.color:
            return text
        status = getattr(record, "status", 0)
        color = COLORS.get(status) or COLORS.get(status // 100, "")
        if not status and record.levelno >= logging.WARNING:
            color = COLORS[5]
        return color + text + "\x1b[0m" if color else text


def configure_logging(color=None):
    """Send the 'runserver' logger to stderr, unless the program configured it."""
    if logger.handlers:
        return
    if color is None:
        color = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogFormatter(color))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def apply_log_config(path):
    """--log-config: configure logging from a file, a .json one through
    dictConfig, any other through fileConfig, leaving the loggers that exist
    (this file's) enabled unless it says otherwise.  A bad file: UsageError."""
    import logging.config
    try:
        if path.endswith(".json"):
            import json
            with open(path, encoding="utf-8") as file:
                config = json.load(file)
            if not isinstance(config, dict):
                raise ValueError("expected a JSON object, as dictConfig takes")
            config.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(config)
        else:
            with open(path, encoding="utf-8"):      # fileConfig() reads nothing silently
                pass
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except OSError as exc:
        raise UsageError('--log-config "%s": %s' % (path, exc.strerror)) from None
    except Exception as exc:        # the config's mistake, whatever logging.config raised
        reason = "%r is missing" % exc.args[0] if isinstance(exc, KeyError) else exc
        raise UsageError('--log-config "%s": %s' % (path, reason)) from None


def run(app=None, host=DEFAULT_HOST, port=DEFAULT_PORT, *, ipv6=False, threading=True,
        reload=True, unix_socket=None, ssl_context=None, static=(), limits=None, quiet=False,
        debug=None, allowed_hosts=None, reload_interval=DEFAULT_RELOAD_INTERVAL,
        reload_include=(), reload_exclude=(), color=None, editor=None, django_static=True,
        root_path="", env_files=ENV_FILES, open_browser=None, skip_checks=False,
        next_free_port=False, proxy_headers=False, forwarded_allow_ips=None, warm=True,
        livereload=False, log_config=None):
    """Serve `app` until Ctrl-C: a WSGI callable, an APP string like 'hello:app'
    (imported in the worker only), or None for the demo app.

    With reload=True (the default) the calling program is run again as a worker
    process, and this process supervises it: call run() under
    `if __name__ == "__main__":`.  The other arguments are make_server()'s,
    plus reload_interval, reload_include, reload_exclude and warm (workers
    forked from a template, where runserver.py is the program) for the
    reloader, color for the log (None: on a terminal without NO_COLOR) and
    django_static (False is --nostatic).  env_files are read into os.environ
    before the app is imported, in each worker (the environment wins; () for
    none); open_browser is a path to open in the web browser once the first
    worker serves; skip_checks leaves out Django's system checks; with
    next_free_port a taken `port` gives way to the next free one of
    NEXT_FREE_PORTS.  livereload (the command line's default, off here unless
    asked) reloads the pages browsers open when a new worker serves, with
    reload and threading only.  log_config is a logging configuration file
    (see apply_log_config()), applied instead of the log's own handler.  A
    bind error is one line on stderr and SystemExit(1).
    """
    put_working_directory_first()           # first: a log config may name a module of yours
    if log_config:
        apply_log_config(log_config)
        reload_include = tuple(reload_include) + (log_config,)  # an edit reloads, a fix restarts
    else:
        configure_logging(color)
    limits = limits or Limits()
    settings = dict(host=host, port=port, ipv6=ipv6, threading=threading,
                    unix_socket=unix_socket, ssl_context=ssl_context, static=static,
                    limits=limits, quiet=quiet, debug=debug, allowed_hosts=allowed_hosts,
                    editor=editor, root_path=root_path, proxy_headers=proxy_headers,
                    forwarded_allow_ips=forwarded_allow_ips,
                    livereload=livereload and reload and threading)
    if reload and not is_reloader_worker():
        if hasattr(signal, "SIGCHLD"):      # ignored, it would leave no exit status to wait for
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        server = bind_or_exit(None, settings, next_free_port=next_free_port)
        watchlist, terminal = make_watchlist(), save_terminal()
        warm = warm and can_warm_reload()
        first_worker = fork_first_worker(server, watchlist, warm) if can_fork_worker() else None
        if not is_reloader_worker():        # (a forked worker goes on below)
            sys.exit(run_supervisor(server, watchlist, terminal, first_worker,
                                    limits.shutdown_timeout, reload_interval, warm))
    inner_run(app, settings, reload=reload, reload_interval=reload_interval,
              reload_include=reload_include, reload_exclude=reload_exclude,
              django_static=django_static, env_files=env_files, open_browser=open_browser,
              skip_checks=skip_checks, next_free_port=next_free_port)


def put_working_directory_first():
    """The working directory first on sys.path, as `python -m` would have it
    (for the supervisor, each worker and the template alike)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def forget_own_directory():
    """When this file is the program: take its directory off the front of
    sys.path, where Python put it (a worker's start too), unless it is the
    working directory; the app must not import this file's neighbours by chance."""
    own = os.path.dirname(os.path.realpath(__file__))
    if os.path.realpath(sys.argv[0]) == os.path.realpath(__file__) and sys.path \
            and os.path.realpath(sys.path[0] or os.curdir) == own != os.path.realpath(os.getcwd()):
        del sys.path[0]


def bind_or_exit(app, settings, listen_socket=None, next_free_port=False):
    """make_server(), with bind errors as one friendly line and SystemExit(1);
    with next_free_port, a taken port gives way to the next free one of
    NEXT_FREE_PORTS, and a line says so."""
    try:
        return make_server(app, listen_socket=listen_socket, **settings)
    except OSError as exc:
        if next_free_port and exc.errno == errno.EADDRINUSE and listen_socket is None:
            for port in range(settings["port"] + 1, settings["port"] + NEXT_FREE_PORTS + 1):
                try:
                    server = make_server(app, **dict(settings, port=port))
                except OSError as again:
                    if again.errno == errno.EADDRINUSE:
                        continue
                    break
                holder = port_holder(settings["port"])
                print_warning("port %d is in use%s; serving on port %d instead." % (
                    settings["port"], " by " + holder if holder else "", port))
                return server
        print_error(describe_bind_error(exc, settings))
        raise SystemExit(1) from None


def describe_bind_error(exc, settings):
    """A bind error in words, with where; for a taken TCP port, what holds it
    and which port after it is free."""
    where = settings["unix_socket"] or "%s:%s" % (settings["host"], settings["port"])
    if isinstance(exc, socket.gaierror):
        message = 'Cannot resolve the host name "%s".' % settings["host"]
    elif exc.errno == errno.ENOENT and settings["unix_socket"]:
        message = "The directory of %s does not exist." % where
    elif exc.errno in ERRNO_MESSAGES:
        message = ERRNO_MESSAGES[exc.errno]
    else:
        message = exc.strerror or str(exc)
    if exc.filename is None and isinstance(exc.args[-1], str) and where in exc.args[-1]:
        message = exc.args[-1][0].upper() + exc.args[-1][1:] + "."
    message = "%s (%s)" % (message, where)
    if exc.errno == errno.EADDRINUSE and not settings["unix_socket"]:
        holder = port_holder(settings["port"])
        message += " It is held by %s" % holder if holder else \
            " `lsof -i :%d` shows what holds it" % settings["port"]
        free = free_port_after(settings["host"], settings["port"], settings["ipv6"])
        message += "; port %d is free." % free if free is not None else "."
    return message


def free_port_after(host, port, ipv6):
    """The first port after `port` that `host` can bind, among the next 100."""
    family = socket.AF_INET6 if ipv6 or ":" in host else socket.AF_INET
    for candidate in range(port + 1, min(port + 100, 65535) + 1):
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # as the server does
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return candidate
    return None


def port_holder(port):
    """Which process listens on TCP `port`, in words, where the system tells
    without privileges; else None."""
    return port_holder_linux(port) if sys.platform.startswith("linux") else None


def port_holder_linux(port):
    """'pid 4242 (python3 runserver.py hello:app)': the listening sockets of
    `port` from /proc/net/tcp and tcp6, their process from the descriptors in
    /proc that this user may read."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as file:
                rows = file.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()        # local address, state (0A: LISTEN), ..., inode
            if len(fields) > 9 and fields[3] == "0A" \
                    and int(fields[1].rpartition(":")[2], 16) == port:
                sockets.add("socket:[%s]" % fields[9])
    for pid in (name for name in os.listdir("/proc") if name.isdigit()) if sockets else ():
        try:
            descriptors = os.listdir("/proc/%s/fd" % pid)
        except OSError:
            continue
        for fd in descriptors:
            try:
                if os.readlink("/proc/%s/fd/%s" % (pid, fd)) not in sockets:
                    continue
                with open("/proc/%s/cmdline" % pid, "rb") as file:
                    command = file.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except OSError:
                continue
            if len(command) > 100:
                command = command[:97] + "..."
            return "pid %s (%s)" % (pid, escape_control(command) or "?")
    return None


def inner_run(app, settings, *, reload, reload_interval, reload_include, reload_exclude,
              django_static=True, env_files=(), open_browser=None, skip_checks=False,
              next_free_port=False):
    """Load the app, serve it until stopped or a reload, as worker or alone."""
    worker = take_worker_environment()
    restarts = int(worker.get(ENV_RESTARTS) or 0)
    listen_socket = None
    if worker.get(ENV_SUPERVISOR_ADDRESS):
        try:
            listen_socket = connect_to_supervisor_windows(worker[ENV_SUPERVISOR_ADDRESS])
        except OSError as exc:
            print_error("cannot reach the server's supervisor process (%s)." % exc)
            raise SystemExit(1) from None
    elif worker:
        listen_socket = socket.socket(fileno=int(worker[ENV_LISTEN_FD]))
        watch_supervisor(int(worker[ENV_SUPERVISOR_FD]))
    # Bound before the app is imported: alone, a taken port fails before the app does anything.
    server = bind_or_exit(None, settings, listen_socket, next_free_port)
    env_counts = load_env_files(env_files)
    app_files = []
    spec = app if isinstance(app, str) else None
    if worker:          # Ctrl-C reaches the supervisor too, which stops us (SIGTERM, "stop")
        signal.signal(signal.SIGINT, lambda signum, frame: None)
    loading_ns = time.time_ns()
    try:
        app = demo_app if app is None else load_app(app) if spec else app
    except AppSpecError as exc:
        if not worker or restarts == 0:
            print_error("%s." % str(exc).rstrip("."))
            report_to_supervisor("stop", str(USAGE_EXIT_CODE))
            raise SystemExit(USAGE_EXIT_CODE) from None
        app = error_app(build_report(None, "Cannot load %s: %s." % (spec, exc)))
    except Exception as exc:            # SystemExit ends a worker: the supervisor says so
        if not worker:
            raise
        report = build_report(exc, "%s failed to import. Fix it and save: the server "
                                   "reloads by itself." % spec)
        print(report.text, file=sys.stderr, end="", flush=True)
        app = error_app(report)
        app_files = [frame.filename for frame in traceback.extract_tb(exc.__traceback__)]
        if isinstance(exc, SyntaxError) and exc.filename:
            app_files.append(exc.filename)
    if spec:
        module_part = spec.partition(":")[0]
        if module_part.endswith(".py"):
            app_files.append(module_part)

    served = serve_django_static_files(app) if django_static else app
    server.app = serving_app(served, settings["static"], settings["root_path"])
    server.reload_requested = False
    if server.debug:
        let_exceptions_through(app)
    if threading.current_thread() is threading.main_thread():
        interrupts = []

        def stop(signum, frame):
            if signum != signal.SIGTERM:        # Ctrl-C or Ctrl-Break
                interrupts.append(signum)
                if len(interrupts) > 1:         # a second Ctrl-C: quit now
                    os._exit(0)
            server.request_stop()
            if not server.multithread and not server.stopping:    # the app may hold this thread
                server.stopping = True
                threading.Thread(target=stop_without_threads, daemon=True, args=(
                    server, settings["limits"].shutdown_timeout, worker)).start()
        for signum in STOP_SIGNALS:
            signal.signal(signum, stop)
        server.wake_on_signals()
    if server.livereload is not None and settings["static"]:
        start_static_watcher(server, settings["static"], reload_interval)
    if restarts == 0:
        print_banner(server, spec or describe_app(app), reload, settings, env_counts)
        if open_browser is not None:
            open_in_browser(server, settings, open_browser)
    if not skip_checks:
        start_framework_checks()
    if reload:          # .env files too, even missing ones: an edit reloads with the new values
        start_file_watcher(server, reload_interval, reload_include, reload_exclude,
                           [path for path in app_files if os.path.isfile(path)] + list(env_files),
                           worker.get(ENV_WATCHLIST), loading_ns, template_directories(app))
    try:
        server.serve_forever()
    finally:
        timeout = settings["limits"].shutdown_timeout
        busy = server.close_idle_and_wait(timeout, None if server.reload_requested else (
            lambda count: logger.info(WAITING_FOR_REQUESTS, timeout, count)))
        if busy:
            logger.warning(LEAVING_REQUESTS, busy, settings["limits"].shutdown_timeout)
        if server.reload_requested:
            sys.stdout.flush()
            sys.stderr.flush()
            report_to_supervisor("reload")
            os._exit(0)
        server.server_close()
    if not worker:
        print_stopped()


def open_in_browser(server, settings, path):
    """--open: open the web browser at `path` under the server's URL, from a
    thread (a console browser holds it until it quits); no browser, one warning.
    Connections it makes before serve_forever() wait in the listen backlog."""
    host, port = server.server_address[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    url = "%s://%s:%d%s%s" % ("https" if settings["ssl_context"] else "http",
                              "[%s]" % host if ":" in host else host, port,
                              settings["root_path"], path)
    print("Opening %s in the web browser." % url, flush=True)

    def open_url():
        import webbrowser
        try:
            opened = webbrowser.open(url)
        except webbrowser.Error:
            opened = False
        if not opened:
            print_warning("no web browser to open %s with; open it yourself." % url)
    threading.Thread(target=open_url, name="runserver-browser", daemon=True).start()


WAITING_FOR_REQUESTS = ("Waiting up to %gs for %d request(s) to finish; " + QUIT_KEYS
                        + " again to quit now.")
LEAVING_REQUESTS = "%d request(s) still running after %gs; leaving them."


def stop_without_threads(server, timeout, worker):
    """--nothreading, stopped by a signal while the app may run in the main
    thread, which then cannot wait for it: wait here as the threaded server
    waits, and if the request is still running, leave it and exit."""
    busy = server.close_idle_and_wait(
        timeout, lambda count: logger.info(WAITING_FOR_REQUESTS, timeout, count))
    if not busy or not server.serving.is_set():     # the main thread finishes the stop
        return
    logger.warning(LEAVING_REQUESTS, busy, timeout)
    server.server_close()
    if not worker:
        print_stopped()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def print_stopped():
    """The last line, even if stdout's reader is gone (`| tee` got the Ctrl-C too)."""
    try:
        print("Server stopped.", flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no error at exit


def describe_app(app):
    """The banner's name for an app given as an object: module:name, else its type."""
    if app is demo_app:
        return None
    name, module = getattr(app, "__qualname__", None), getattr(app, "__module__", None)
    return "%s:%s" % (module, name) if name and module else "a %s object" % type(app).__name__


def print_banner(server, spec, reload, settings, env_counts=()):
    """Django's banner, printed once the socket listens, flushed for scripts."""
    scheme = "https" if settings["ssl_context"] else "http"
    lines = [time.strftime("%B %d, %Y - %X"),
             "runserver.py %s (Python %s), serving %s%s" % (
                 __version__, sys.version.split()[0], spec or "the demo app",
                 "" if not reload else ", reloading on changes (warm)" if _worker.get(ENV_WARM)
                 else ", reloading on changes")]
    if env_counts:
        lines.append(describe_env_files(env_counts))
    root_path = settings.get("root_path", "")
    if isinstance(server.server_address, tuple):
        host, port = server.server_address[:2]
        shown = "[%s]" % host if ":" in host else host
        lines.append("Starting development server at %s://%s:%d%s/"
                     % (scheme, shown, port, root_path))
        if host in ("0.0.0.0", "::"):
            for address in network_addresses(server):
                lines.append("  on your network: %s://%s:%d%s/" % (
                    scheme, "[%s]" % address if ":" in address else address, port, root_path))
    else:
        lines.append("Starting development server at unix:%s" % server.server_address)
        import shlex
        lines.append("  try: curl --unix-socket %s %s://localhost%s/"
                     % (shlex.quote(server.server_address), scheme, root_path))
    lines += security_lines(settings)
    if settings.get("livereload"):
        lines.append("  live reload: on, in the pages browsers open (--no-livereload turns it off)")
    lines.append("Quit the server with %s." % QUIT_KEYS)
    print("\n".join(lines), flush=True)


def security_lines(settings):
    """The banner's lines on the certificate served and the proxies trusted."""
    lines = []
    context = settings["ssl_context"]
    if getattr(context, "certificate_fingerprint", None):
        adhoc = context.certificate_file == os.path.join(user_cache_directory(), ADHOC_CERT_FILE)
        lines.append("  certificate: %s%s" % (context.certificate_file, ", self-signed for "
                                              "localhost, 127.0.0.1 and ::1" if adhoc else ""))
        lines.append("  SHA-256 fingerprint: %s" % context.certificate_fingerprint)
    if settings.get("proxy_headers"):
        allowed = settings.get("forwarded_allow_ips") or DEFAULT_FORWARDED_ALLOW_IPS
        lines.append("  forwarding headers trusted from: %s" % ", ".join(allowed))
    return lines


def describe_env_files(counts):
    """The banner's line on the .env files read: 'Loaded .env (3 variables), ...'."""
    return "Loaded " + ", ".join("%s (%d variable%s)" % (path, count, "" if count == 1 else "s")
                                 for path, count in counts) + "."


def network_addresses(server):
    """The addresses other machines may reach a server bound to every
    interface at: IPv4 for 0.0.0.0, IPv6 and (dual stack) IPv4 for ::."""
    families = [socket.AF_INET]
    if server.address_family == socket.AF_INET6:
        families = [socket.AF_INET6]
        try:
            if not server.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY):
                families.append(socket.AF_INET)
        except (OSError, AttributeError):
            pass
    return [address for family in families for address in lan_addresses(family)]


def lan_addresses(family):
    """This machine's non-loopback addresses, without sending a packet: the
    one a UDP socket's connect() picks to reach a documentation address (the
    default route's), then those of the host name."""
    found = []
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((ROUTE_PROBE_ADDRESSES[family], 9))
            found.append(probe.getsockname()[0])
    except OSError:
        pass
    try:
        found += [info[4][0] for info in socket.getaddrinfo(
            socket.gethostname(), None, family, socket.SOCK_STREAM)]
    except OSError:
        pass
    addresses = []
    for address in found:
        if not (is_loopback(address) or address.lower().startswith("fe80:")
                or address in ("0.0.0.0", "::") or address in addresses):
            addresses.append(address)
    return addresses[:NETWORK_ADDRESSES_SHOWN]


def make_parser():
    """The command line's parser: add_arguments() with the help's words."""
    parser = ArgumentParser(
        prog="runserver.py",
        description="A development server for any WSGI application, like Django's "
                    "runserver:\nkeep-alive HTTP/1.1, autoreloading, static files, HTTPS.",
        epilog="examples:\n"
               "  python runserver.py                     the demo app on 127.0.0.1:8000\n"
               "  python runserver.py hello:app 8080      hello.py's app on port 8080\n"
               "  python runserver.py hello:app 0:8000    on every interface\n"
               "  python runserver.py 'factory:create_app(\"dev\")' --static /static=public\n"
               "  python runserver.py hello:app unix:/tmp/hello.sock --noreload\n"
               "  python runserver.py hello:app --check   check, import, serve nothing\n"
               "\n"
               "environment:\n"
               "  Each option can be set by a variable instead, in the environment or in a\n"
               "  .env file: RUNSERVER_ and its long name in capitals, - as _, such as\n"
               "  RUNSERVER_RELOAD_INTERVAL=1 or RUNSERVER_NORELOAD=1; RUNSERVER_APP and\n"
               "  RUNSERVER_ADDRPORT for APP and ADDRPORT.  Switches take 1/0, true/false,\n"
               "  yes/no or on/off, repeatable options their values apart by spaces.  The\n"
               "  command line wins over the environment, which wins over .env files.\n"
               "  .env and .flaskenv in the working directory are read if present (.env\n"
               "  wins), before the app is imported; FLASK_APP names the app if nothing\n"
               "  else does.",
        formatter_class=HelpFormatter)
    add_arguments(parser)
    return parser


def main(argv=None):
    """The command line: python runserver.py [APP] [ADDRPORT] [options]."""
    forget_own_directory()
    if ENV_TEMPLATE_FD in os.environ:      # a template: it returns in each worker it forks
        run_template()
    try:
        settings = resolve_settings(make_parser(), argv)
        if not is_reloader_worker():            # a worker's supervisor has told them
            for warning in settings.warnings:
                print_warning(warning)
        return check(settings) if settings.check else handle(settings)
    except UsageError as exc:
        print_error(exc)
        return USAGE_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
