"""Tests for runserver.py: real sockets on loopback, real subprocesses for the CLI.

Run with:  python -m unittest -v test_runserver

One TestCase per area of runserver.py, in the file's reading order.  Servers
listen on port 0; tests wait on events, banner lines and responses, never on
fixed sleeps.
"""

import contextlib
import hashlib
import io
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import wsgiref.validate

import runserver

HERE = os.path.dirname(os.path.abspath(__file__))
RUNSERVER = os.path.join(HERE, "runserver.py")
TIMEOUT = 10          # seconds any single wait may take before the test fails


# ---- Shared helpers ---------------------------------------------------------------

class LogCapture(logging.Handler):
    """Collects the 'runserver' logger's records; tests can wait for one."""

    def __init__(self):
        super().__init__()
        self.records = []
        self.changed = threading.Condition()

    def emit(self, record):
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def messages(self):
        with self.changed:
            return [record.getMessage() for record in self.records]

    def clear(self):
        with self.changed:
            self.records.clear()

    def wait_for(self, pattern, timeout=TIMEOUT):
        """Return the first message matching the regex `pattern`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for record in self.records:
                    message = record.getMessage()
                    if re.search(pattern, message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("no log line matching %r in %r"
                                         % (pattern, [r.getMessage() for r in self.records]))
                self.changed.wait(remaining)


LOG = LogCapture()


def setUpModule():
    logger = logging.getLogger("runserver")
    logger.addHandler(LOG)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False


def tearDownModule():
    logging.getLogger("runserver").removeHandler(LOG)


def hello_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [b"Hello world\n"]


def echo_app(environ, start_response):
    """Answers with the request body and a few environ values as headers."""
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("X-Content-Length", environ.get("CONTENT_LENGTH", "")),
                              ("X-Path", environ["PATH_INFO"].encode("latin-1").hex()),
                              ("Content-Length", str(len(body)))])
    return [body]


class ServerThread:
    """A make_server() server on 127.0.0.1:0, serving in a daemon thread."""

    def __init__(self, app, **options):
        options.setdefault("quiet", True)
        host = options.pop("host", "127.0.0.1")
        self.server = runserver.make_server(app, host, 0, **options)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.close_idle_and_wait(2)
        self.server.server_close()
        self.thread.join(TIMEOUT)


class Response:
    """A response read off a socket: status, headers (lower-case names), body."""

    def __init__(self, status, reason, headers, body, raw_head):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body
        self.raw_head = raw_head

    def header(self, name, default=None):
        values = [value for key, value in self.headers if key == name.lower()]
        return values[0] if values else default

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:200])


class Reader:
    """Reads HTTP responses from a socket, keeping what is left for the next."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed; had %r" % self.buffer[:200])
        self.buffer += data

    def read_until(self, marker):
        while marker not in self.buffer:
            self.fill()
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def read_exactly(self, size):
        while len(self.buffer) < size:
            self.fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_to_eof(self):
        while True:
            try:
                self.fill()
            except EOFError:
                data, self.buffer = self.buffer, b""
                return data

    def response(self, method="GET"):
        head = self.read_until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        version, status, reason = (lines[0].decode("latin-1").split(" ", 2) + [""])[:3]
        headers = []
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        response = Response(int(status), reason, headers, b"", head)
        if response.status == 100:
            return response
        if method == "HEAD" or response.status in (204, 304) or response.status < 200:
            return response
        if response.header("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n")
                    break
                parts.append(self.read_exactly(size))
                assert self.read_exactly(2) == b"\r\n"
            response.body = b"".join(parts)
        elif response.header("content-length") is not None:
            response.body = self.read_exactly(int(response.header("content-length")))
        else:
            response.body = self.read_to_eof()
        return response


class ServerTestCase(unittest.TestCase):
    """Base class: start servers, connect, send raw bytes, read responses."""

    def setUp(self):
        LOG.clear()

    def start_server(self, app=hello_app, **options):
        server = ServerThread(app, **options)
        self.addCleanup(server.close)
        return server

    def connect(self, server, timeout=TIMEOUT):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self.addCleanup(sock.close)
        return sock

    def request(self, server, raw, method="GET"):
        """Send raw bytes on a new connection and read one response."""
        sock = self.connect(server)
        sock.sendall(raw)
        return Reader(sock).response(method)

    def exchange(self, server, raw):
        """Send raw bytes on a new connection; return all bytes until the server closes."""
        sock = self.connect(server)
        sock.sendall(raw)
        return Reader(sock).read_to_eof()

    def assertClosed(self, sock):
        """The server closed the connection (EOF or reset) within TIMEOUT."""
        sock.settimeout(TIMEOUT)
        try:
            data = sock.recv(65536)
            while data:
                data = sock.recv(65536)
        except ConnectionResetError:
            pass


def get(path="/", host="127.0.0.1", extra=b""):
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path.encode(), host.encode(), extra)


class CLIProcess:
    """`python runserver.py ARGS` in its own process group, stdout read in a thread."""

    def __init__(self, args, cwd=None, env=None):
        environ = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
        environ.update(env or {})
        self.process = subprocess.Popen(
            [sys.executable, RUNSERVER] + list(args), cwd=cwd, env=environ,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.lines = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in iter(self.process.stdout.readline, b""):
            with self.changed:
                self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append(None)             # end of output
            self.changed.notify_all()

    def output(self):
        with self.changed:
            return "\n".join(line for line in self.lines if line is not None)

    def wait_for(self, pattern, timeout=TIMEOUT, start=0):
        """Wait for an output line matching `pattern`; return the match."""
        deadline = time.monotonic() + timeout
        with self.changed:
            index = start
            while True:
                while index < len(self.lines):
                    line = self.lines[index]
                    if line is None:
                        raise AssertionError("process ended without printing %r; output:\n%s"
                                             % (pattern, self.output()))
                    match = re.search(pattern, line)
                    if match:
                        return match
                    index += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("no line matching %r within %ss; output:\n%s"
                                         % (pattern, timeout, self.output()))
                self.changed.wait(remaining)

    def wait_for_banner(self):
        """Wait for the banner; return the URL it shows."""
        return self.wait_for(r"Starting development server at (\S+)").group(1)

    def port(self):
        return int(re.search(r":(\d+)/$", self.wait_for_banner()).group(1))

    def signal(self, signum):
        os.killpg(self.process.pid, signum)

    def wait(self, timeout=TIMEOUT):
        code = self.process.wait(timeout)
        self.reader.join(timeout)
        return code

    def kill(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(TIMEOUT)
        self.process.stdout.close()


class CLITestCase(unittest.TestCase):
    """Base class: run the command line in subprocesses, in a scratch directory."""

    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="runserver-test-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    def write(self, name, text):
        path = os.path.join(self.directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = path + ".tmp"
        with open(temporary, "w") as file:
            file.write(text)
        os.replace(temporary, path)        # an atomic save, as editors do
        return path

    def start(self, *args, env=None):
        process = CLIProcess(args, cwd=self.directory, env=env)
        self.addCleanup(process.kill)
        return process

    def run_cli(self, *args, timeout=TIMEOUT):
        """Run the CLI to completion; return (exit status, combined output)."""
        result = subprocess.run([sys.executable, RUNSERVER] + list(args), cwd=self.directory,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=timeout,
                                env=dict(os.environ, NO_COLOR="1"))
        return result.returncode, result.stdout.decode("utf-8", "replace")


def http_get(port, path="/", headers=b"", host="127.0.0.1"):
    """One GET on a new connection to 127.0.0.1:port; return the Response."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n"
                     % (path.encode(), host.encode(), headers))
        return Reader(sock).response()


# ---- HTTP grammar and parsing, without sockets -----------------------------------

class ParseRequestHeadTests(unittest.TestCase):

    def parse(self, data):
        return runserver.parse_request_head(data)

    def test_simple_request(self):
        head = self.parse(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2")
        self.assertEqual((head.method, head.target, head.version), ("GET", b"/a?b=1", "HTTP/1.1"))
        self.assertEqual(head.environ["HTTP_X_A"], "1, 2")
        self.assertTrue(head.keep_alive)

    def test_cookies_are_joined_with_semicolons(self):
        head = self.parse(b"GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nCookie: b=2")
        self.assertEqual(head.environ["HTTP_COOKIE"], "a=1; b=2")

    def test_underscore_header_names_are_dropped(self):
        head = self.parse(b"GET / HTTP/1.1\r\nHost: x\r\nX_Auth: evil\r\nX-Auth: good")
        self.assertEqual(head.environ["HTTP_X_AUTH"], "good")

    def test_connection_semantics(self):
        cases = [(b"HTTP/1.1", b"", True), (b"HTTP/1.1", b"Connection: close\r\n", False),
                 (b"HTTP/1.1", b"Connection: Keep-Alive, CLOSE\r\n", False),
                 (b"HTTP/1.0", b"", False), (b"HTTP/1.0", b"Connection: keep-alive\r\n", True)]
        for version, extra, keep_alive in cases:
            with self.subTest(version=version, extra=extra):
                head = self.parse((b"GET / %s\r\nHost: x\r\n%s" % (version, extra))[:-2])
                self.assertEqual(head.keep_alive, keep_alive)

    def test_absolute_form_replaces_host(self):
        head = self.parse(b"GET http://example.test:8/p?q HTTP/1.1\r\nHost: other")
        self.assertEqual(head.target, b"/p?q")
        self.assertEqual(head.environ["HTTP_HOST"], "example.test:8")

    def test_chunk_headers(self):
        self.assertEqual(runserver.parse_chunk_header(b"1a"), 26)
        self.assertEqual(runserver.parse_chunk_header(b"A;name=value;x=\"q\\\"s\""), 10)
        for bad in (b"", b"-1", b"+1", b"0x1", b"g", b"1" * 17, b"1;", b"1; =x"):
            with self.subTest(line=bad), self.assertRaises(runserver.BadRequest):
                runserver.parse_chunk_header(bad)

    def test_http_date_is_imf_fixdate(self):
        self.assertEqual(runserver.http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT")

    def test_escape_control(self):
        self.assertEqual(runserver.escape_control("a\x1b[31mb\r\n"), "a\\x1b[31mb\\x0d\\x0a")


if __name__ == "__main__":
    unittest.main()
