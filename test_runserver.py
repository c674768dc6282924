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
        head = self.parse(b"GET /a?b=1 HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\nX-A: 2")
        self.assertEqual((head.method, head.target, head.version), ("GET", b"/a?b=1", "HTTP/1.1"))
        self.assertEqual(head.environ["HTTP_X_A"], "1, 2")
        self.assertTrue(head.keep_alive)

    def test_cookies_are_joined_with_semicolons(self):
        head = self.parse(b"GET / HTTP/1.1\r\nHost: localhost\r\nCookie: a=1\r\nCookie: b=2")
        self.assertEqual(head.environ["HTTP_COOKIE"], "a=1; b=2")

    def test_underscore_header_names_are_dropped(self):
        head = self.parse(b"GET / HTTP/1.1\r\nHost: localhost\r\nX_Auth: evil\r\nX-Auth: good")
        self.assertEqual(head.environ["HTTP_X_AUTH"], "good")

    def test_connection_semantics(self):
        cases = [(b"HTTP/1.1", b"", True), (b"HTTP/1.1", b"Connection: close\r\n", False),
                 (b"HTTP/1.1", b"Connection: Keep-Alive, CLOSE\r\n", False),
                 (b"HTTP/1.0", b"", False), (b"HTTP/1.0", b"Connection: keep-alive\r\n", True)]
        for version, extra, keep_alive in cases:
            with self.subTest(version=version, extra=extra):
                head = self.parse((b"GET / %s\r\nHost: localhost\r\n%s" % (version, extra))[:-2])
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



# ---- WSGI request handler: HTTP/1.1 semantics -------------------------------------

def generator_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"one,"
    yield b""
    yield b"two"


class KeepAliveTests(ServerTestCase):

    def test_two_requests_on_one_connection(self):
        server = self.start_server()
        sock = self.connect(server)
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(get())
            response = reader.response()
            self.assertEqual((response.status, response.body), (200, b"Hello world\n"))
            self.assertIsNone(response.header("connection"))

    def test_connection_close_is_honoured(self):
        server = self.start_server()
        data = self.exchange(server, get(extra=b"Connection: close\r\n") + get())
        self.assertEqual(data.count(b"HTTP/1.1 200"), 1)
        self.assertIn(b"Connection: close", data)

    def test_http10_closes_unless_keep_alive_is_asked(self):
        server = self.start_server()
        data = self.exchange(server, b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"))
        sock = self.connect(server)
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = reader.response()
            self.assertEqual(response.header("connection"), "keep-alive")

    def test_pipelined_requests_are_answered_in_order(self):
        def path_app(environ, start_response):
            body = environ["PATH_INFO"].encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
        server = self.start_server(path_app)
        sock = self.connect(server)
        sock.sendall(b"".join(get("/%d" % i) for i in range(20)))
        reader = Reader(sock)
        self.assertEqual([reader.response().body for _ in range(20)],
                         [b"/%d" % i for i in range(20)])

    def test_leading_empty_lines_are_ignored(self):
        server = self.start_server()
        self.assertEqual(self.request(server, b"\r\n" + get()).status, 200)

    def test_nothreading_server_closes_after_each_response(self):
        server = self.start_server(threading=False)
        data = self.exchange(server, get())
        self.assertIn(b"Connection: close", data)


class ResponseFramingTests(ServerTestCase):

    def test_response_without_length_is_chunked_for_http11(self):
        server = self.start_server(generator_app)
        response = self.request(server, get())
        self.assertEqual(response.header("transfer-encoding"), "chunked")
        self.assertEqual(response.body, b"one,two")

    def test_response_without_length_closes_for_http10(self):
        server = self.start_server(generator_app)
        data = self.exchange(server, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"Connection: close", head)
        self.assertNotIn(b"Transfer-Encoding", head)
        self.assertEqual(body, b"one,two")

    def test_single_chunk_list_gets_a_content_length(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"abc"]
        response = self.request(self.start_server(app), get())
        self.assertEqual(response.header("content-length"), "3")

    def test_head_keeps_content_length_but_sends_no_body(self):
        server = self.start_server()
        sock = self.connect(server)
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n" + get())
        reader = Reader(sock)
        head = reader.response("HEAD")
        self.assertEqual(head.header("content-length"), "12")
        self.assertEqual(reader.response().body, b"Hello world\n")   # nothing was in between

    def test_no_body_statuses_never_carry_a_body(self):
        for status in ("204 No Content", "304 Not Modified"):
            def app(environ, start_response, status=status):
                start_response(status, [])
                return [b"ignored"]
            with self.subTest(status=status):
                server = self.start_server(app)
                sock = self.connect(server)
                sock.sendall(get() + get())
                reader = Reader(sock)
                first = reader.response()
                self.assertEqual(first.status, int(status[:3]))
                self.assertIsNone(first.header("transfer-encoding"))
                self.assertEqual(reader.response().status, int(status[:3]))

    def test_date_and_server_headers(self):
        response = self.request(self.start_server(), get())
        self.assertRegex(response.header("date"), r"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$")
        self.assertTrue(response.header("server").startswith("runserver.py/"))

    def test_empty_response_gets_content_length_zero(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            return []
        response = self.request(self.start_server(app), get())
        self.assertEqual((response.header("content-length"), response.body), ("0", b""))


class RequestBodyTests(ServerTestCase):

    def test_read_without_size_stops_at_the_body_end(self):
        server = self.start_server(echo_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello" + get())
        reader = Reader(sock)
        self.assertEqual(reader.response().body, b"hello")
        self.assertEqual(reader.response().status, 200)

    def test_readline_and_iteration(self):
        def app(environ, start_response):
            stream = environ["wsgi.input"]
            first = stream.readline()
            second = stream.readline(3)
            rest = list(stream)
            body = repr((first, second, rest)).encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
        server = self.start_server(app)
        body = b"line one\nline two\nthree"
        response = self.request(server, b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s"
                                % (len(body), body))
        self.assertEqual(response.body, repr((b"line one\n", b"lin", [b"e two\n", b"three"])).encode())

    def test_chunked_body_is_decoded_with_content_length_set(self):
        seen = {}

        def app(environ, start_response):
            seen["terminated"] = environ["wsgi.input_terminated"]
            return echo_app(environ, start_response)
        server = self.start_server(app)
        response = self.request(server, b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                                        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        self.assertEqual(response.body, b"hello world")
        self.assertEqual(response.header("x-content-length"), "11")
        self.assertTrue(seen["terminated"])

    def test_large_chunked_body_spools_to_a_file(self):
        data = os.urandom(3 << 20)
        server = self.start_server(echo_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(data), 1 << 20):
            block = data[start:start + (1 << 20)]
            sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
        sock.sendall(b"0\r\n\r\n")
        self.assertEqual(Reader(sock).response().body, data)

    def test_unread_body_is_drained_before_the_next_request(self):
        server = self.start_server(hello_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 13\r\n\r\nGET /evil HTTP" + get())
        reader = Reader(sock)
        self.assertEqual(reader.response().status, 200)
        self.assertEqual(reader.response().status, 200)
        self.assertEqual(LOG.messages().count("x"), 0)
        self.assertNotIn(b"HTTP", reader.buffer)

    def test_expect_100_continue_is_sent_once_when_the_app_reads(self):
        server = self.start_server(echo_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        self.assertEqual(reader.response().status, 100)
        sock.sendall(b"body")
        response = reader.response()
        self.assertEqual((response.status, response.body), (200, b"body"))
        self.assertNotIn(b"100 Continue", reader.buffer)

    def test_no_100_continue_when_the_app_does_not_read(self):
        server = self.start_server(hello_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        response = reader.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("connection"), "close")

    def test_chunked_upload_with_expect_100_continue(self):
        server = self.start_server(echo_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        self.assertEqual(reader.response().status, 100)
        sock.sendall(b"3\r\nabc\r\n0\r\n\r\n")
        self.assertEqual(reader.response().body, b"abc")


class EnvironTests(ServerTestCase):

    def capture(self, raw, **options):
        seen = {}

        def app(environ, start_response):
            seen.update(environ)
            return hello_app(environ, start_response)
        server = self.start_server(app, **options)
        self.request(server, raw)
        return seen, server

    def test_cgi_variables(self):
        environ, server = self.capture(
            b"GET /a%20b/%C3%A9?x=%20 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/x\r\n"
            b"X-Many: 1\r\nx-many: 2\r\n\r\n")
        self.assertEqual(environ["REQUEST_METHOD"], "GET")
        self.assertEqual(environ["SCRIPT_NAME"], "")
        self.assertEqual(environ["PATH_INFO"], "/a b/\xc3\xa9")
        self.assertEqual(environ["QUERY_STRING"], "x=%20")
        self.assertEqual(environ["CONTENT_TYPE"], "text/x")
        self.assertEqual(environ["SERVER_NAME"], "127.0.0.1")
        self.assertEqual(environ["SERVER_PORT"], str(server.port))
        self.assertEqual(environ["SERVER_PROTOCOL"], "HTTP/1.1")
        self.assertEqual(environ["REMOTE_ADDR"], "127.0.0.1")
        self.assertTrue(environ["REMOTE_PORT"].isdigit())
        self.assertEqual(environ["HTTP_X_MANY"], "1, 2")
        self.assertEqual(environ["HTTP_HOST"], "localhost")
        self.assertNotIn("HTTP_CONTENT_TYPE", environ)
        self.assertEqual(environ["wsgi.version"], (1, 0))
        self.assertEqual(environ["wsgi.url_scheme"], "http")
        self.assertIs(environ["wsgi.multithread"], True)
        self.assertIs(environ["wsgi.multiprocess"], False)
        self.assertIs(environ["wsgi.run_once"], False)
        self.assertIs(environ["wsgi.file_wrapper"], runserver.FileWrapper)

    def test_wsgiref_validator_accepts_the_server(self):
        def app(environ, start_response):
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        server = self.start_server(wsgiref.validate.validator(app))
        with warnings_as_errors():
            for raw in (get("/v?q=1"), b"POST /p HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc",
                        b"POST /p HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"):
                with self.subTest(raw=raw):
                    self.assertEqual(self.request(server, raw).body, b"ok")


@contextlib.contextmanager
def warnings_as_errors():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


class StartResponseTests(ServerTestCase):

    def test_write_callable_and_headers_on_first_nonempty_chunk(self):
        def app(environ, start_response):
            write = start_response("200 OK", [("Content-Length", "6")])
            write(b"abc")
            return [b"", b"def"]
        self.assertEqual(self.request(self.start_server(app), get()).body, b"abcdef")

    def test_error_before_the_first_chunk_can_still_become_a_500(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            yield b""
            raise ValueError("late but not too late")
        response = self.request(self.start_server(app), get())
        self.assertEqual(response.status, 500)
        self.assertIn(b"late but not too late", response.body)

    def test_exc_info_replaces_headers_before_they_are_sent(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            try:
                raise KeyError("x")
            except KeyError:
                start_response("503 Service Unavailable", [("Content-Length", "4")], sys.exc_info())
            return [b"oops"]
        response = self.request(self.start_server(app), get())
        self.assertEqual((response.status, response.body), (503, b"oops"))

    def test_exc_info_after_headers_were_sent_reraises(self):
        def app(environ, start_response):
            write = start_response("200 OK", [("Content-Length", "100")])
            write(b"partial")
            try:
                raise KeyError("after")
            except KeyError:
                start_response("500 Error", [], sys.exc_info())
            return [b"never"]
        server = self.start_server(app)
        data = self.exchange(server, get())
        self.assertTrue(data.startswith(b"HTTP/1.1 200"))
        self.assertTrue(data.endswith(b"partial"))
        LOG.wait_for(r"response cut short")

    def test_close_is_always_called(self):
        closed = threading.Event()

        class Body:
            def __iter__(self):
                yield b"x"

            def close(self):
                closed.set()

        def app(environ, start_response):
            start_response("200 OK", [])
            return Body()
        self.assertEqual(self.request(self.start_server(app), get()).body, b"x")
        self.assertTrue(closed.wait(TIMEOUT))

    def test_invalid_app_output_becomes_a_500_with_a_log_line(self):
        cases = {
            "status is bytes": lambda s: s(b"200 OK", []),
            "header with newline": lambda s: s("200 OK", [("X-A", "a\r\nSet-Cookie: x")]),
            "hop-by-hop header": lambda s: s("200 OK", [("Connection", "close")]),
            "headers as a tuple": lambda s: s("200 OK", ()),
        }
        for name, call in cases.items():
            def app(environ, start_response, call=call):
                call(start_response)
                return [b"body"]
            with self.subTest(name):
                LOG.clear()
                response = self.request(self.start_server(app), get())
                self.assertEqual(response.status, 500)
                self.assertNotIn(b"Set-Cookie: x", response.raw_head)
                LOG.wait_for(r"Error in the app")

    def test_non_bytes_chunk_is_a_500(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            return ["text"]
        self.assertEqual(self.request(self.start_server(app), get()).status, 500)


class AppErrorTests(ServerTestCase):

    @staticmethod
    def failing_app(environ, start_response):
        raise RuntimeError("the app's own bug")

    def test_debug_500_shows_the_traceback_as_text_or_html(self):
        server = self.start_server(self.failing_app, debug=True)
        text = self.request(server, get())
        self.assertEqual(text.status, 500)
        self.assertTrue(text.header("content-type").startswith("text/plain"))
        self.assertIn(b"RuntimeError: the app's own bug", text.body)
        page = self.request(server, get(extra=b"Accept: text/html\r\n"))
        self.assertTrue(page.header("content-type").startswith("text/html"))
        self.assertIn(b"RuntimeError: the app&#x27;s own bug", page.body)
        LOG.wait_for(r"RuntimeError: the app's own bug")

    def test_without_debug_the_page_is_generic_but_the_log_has_it(self):
        server = self.start_server(self.failing_app, debug=False)
        response = self.request(server, get())
        self.assertEqual(response.status, 500)
        self.assertNotIn(b"RuntimeError", response.body)
        LOG.wait_for(r"RuntimeError: the app's own bug")

    def test_error_after_headers_truncates_the_response(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            yield b"first"
            raise RuntimeError("mid-stream")
        server = self.start_server(app)
        data = self.exchange(server, get())
        self.assertIn(b"5\r\nfirst\r\n", data)
        self.assertFalse(data.endswith(b"0\r\n\r\n"))
        LOG.wait_for(r"response cut short")

    def test_client_disconnect_mid_response_is_one_quiet_line(self):
        sent = threading.Event()

        def app(environ, start_response):
            start_response("200 OK", [])
            for _ in range(10000):
                yield b"x" * 65536
                sent.set()
        server = self.start_server(app)
        sock = self.connect(server)
        sock.sendall(get())
        sock.recv(100)
        self.assertTrue(sent.wait(TIMEOUT))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        sock.close()
        LOG.wait_for(r"client disconnected")
        self.assertFalse([m for m in LOG.messages() if "Traceback" in m])


class FileWrapperTests(ServerTestCase):

    def setUp(self):
        super().setUp()
        file = tempfile.NamedTemporaryFile(delete=False)
        file.write(bytes(range(256)) * 1024)
        file.close()
        self.path = file.name
        self.addCleanup(os.unlink, self.path)

    def wrapper_app(self, offset=0, length=None):
        def app(environ, start_response):
            file = open(self.path, "rb")
            file.seek(offset)
            headers = [] if length is None else [("Content-Length", str(length))]
            start_response("200 OK", headers)
            return environ["wsgi.file_wrapper"](file)
        return app

    def test_sendfile_from_the_current_position(self):
        response = self.request(self.start_server(self.wrapper_app(offset=1000)), get())
        self.assertEqual(response.body, (bytes(range(256)) * 1024)[1000:])
        self.assertEqual(response.header("content-length"), str(256 * 1024 - 1000))

    def test_sendfile_never_past_the_content_length(self):
        server = self.start_server(self.wrapper_app(offset=10, length=100))
        sock = self.connect(server)
        sock.sendall(get() + get())
        reader = Reader(sock)
        self.assertEqual(reader.response().body, (bytes(range(256)) * 1024)[10:110])
        self.assertEqual(reader.response().status, 200)       # the stream stayed in sync

    def test_non_file_objects_are_read_in_blocks(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            return environ["wsgi.file_wrapper"](io.BytesIO(b"y" * 700000), 4096)
        response = self.request(self.start_server(app), get())
        self.assertEqual(response.body, b"y" * 700000)


class LoggingTests(ServerTestCase):

    def test_access_log_line(self):
        server = self.start_server(quiet=False)
        self.request(server, get("/path?q=1"))
        line = LOG.wait_for(r"GET /path")
        self.assertRegex(line, r'^"GET /path\?q=1 HTTP/1.1" 200 12 \d+\.\dms$')

    def test_quiet_has_no_access_log(self):
        server = self.start_server(quiet=True)
        self.request(server, get("/quiet"))
        self.request(server, b"BAD\r\n\r\n")
        LOG.wait_for(r"request line")
        self.assertFalse([m for m in LOG.messages() if "/quiet" in m])

    def test_control_characters_are_escaped(self):
        server = self.start_server(quiet=False)
        self.request(server, b"GET /\x1b[31m HTTP/1.1\r\nHost: localhost\r\n\r\n")
        line = LOG.wait_for(r"400")
        self.assertNotIn("\x1b", line)
        self.assertIn("\\x1b", line)


# ---- Server classes and the Python API --------------------------------------------

class APITests(unittest.TestCase):

    def test_import_has_no_side_effects(self):
        code = ("import logging, signal, sys; path = list(sys.path); "
                "handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)); "
                "import runserver; "
                "assert sys.path == path, 'sys.path changed'; "
                "assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers; "
                "assert not logging.getLogger('runserver').handlers; "
                "assert not logging.getLogger().handlers; print('clean')")
        result = subprocess.run([sys.executable, "-c", code], cwd=HERE, capture_output=True,
                                timeout=TIMEOUT)
        self.assertEqual(result.stdout.strip(), b"clean", result.stderr)

    def test_public_names(self):
        self.assertRegex(runserver.__version__, r"^\d+\.\d+\.\d+$")
        for name in runserver.__all__:
            self.assertTrue(hasattr(runserver, name), name)

    def test_server_class_is_composed_with_the_mixin_first(self):
        server = runserver.make_server(hello_app, "127.0.0.1", 0)
        self.addCleanup(server.server_close)
        mro = type(server).__mro__
        self.assertIs(mro[1], socketserver_mixin())
        self.assertTrue(server.daemon_threads)
        self.assertGreaterEqual(server.request_queue_size, 128)
        plain = runserver.make_server(hello_app, "127.0.0.1", 0, threading=False)
        self.addCleanup(plain.server_close)
        self.assertIs(type(plain), runserver.WSGIServer)

    def test_tcp_nodelay_on_accepted_sockets(self):
        seen = {}

        class Handler(runserver.WSGIRequestHandler):
            def setup(self):
                super().setup()
                seen["nodelay"] = self.request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        server = ServerThread(hello_app, handler_class=Handler)
        self.addCleanup(server.close)
        http_get(server.port)
        self.assertTrue(seen["nodelay"])

    def test_shutdown_returns_promptly(self):
        server = ServerThread(hello_app)
        started = time.monotonic()
        server.close()
        self.assertFalse(server.thread.is_alive())
        self.assertLess(time.monotonic() - started, TIMEOUT)

    def test_ipv6_loopback(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6 support")
        try:
            server = ServerThread(hello_app, host="::1")
        except OSError as exc:
            self.skipTest("cannot bind ::1: %s" % exc)
        self.addCleanup(server.close)
        with socket.create_connection(("::1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(get(host="[::1]"))
            self.assertEqual(Reader(sock).response().status, 200)


def socketserver_mixin():
    import socketserver
    return socketserver.ThreadingMixIn


# ---- App loading --------------------------------------------------------------------

class LoadAppTests(CLITestCase):

    def setUp(self):
        super().setUp()
        sys.path.insert(0, self.directory)
        self.addCleanup(sys.path.remove, self.directory)

    def module(self, name, text):
        self.write(name + ".py", text)
        self.addCleanup(sys.modules.pop, name, None)

    def test_spec_forms(self):
        self.module("specs_a", "def application(e, s): pass\ndef app(e, s): pass\n"
                               "def make(name, debug=False):\n    def wsgi(e, s): pass\n"
                               "    wsgi.args = (name, debug)\n    return wsgi\n"
                               "class K:\n    inner = staticmethod(app)\n")
        module = __import__("specs_a")
        self.assertIs(runserver.load_app("specs_a"), module.application)
        self.assertIs(runserver.load_app("specs_a:app"), module.app)
        self.assertIs(runserver.load_app("specs_a:K.inner"), module.app)
        self.assertEqual(runserver.load_app("specs_a:make('dev', debug=True)").args, ("dev", True))
        self.assertEqual(runserver.load_app("specs_a:make()" if False else "specs_a:make('x')").args,
                         ("x", False))
        path = os.path.join(self.directory, "specs_a.py")
        self.assertTrue(callable(runserver.load_app(path + ":app")))

    def test_app_is_the_fallback_name(self):
        self.module("specs_b", "def app(e, s): pass\n")
        self.assertIs(runserver.load_app("specs_b"), sys.modules["specs_b"].app)

    def test_user_mistakes_are_app_spec_errors(self):
        self.module("specs_c", "value = 3\ndef factory(x): return 5\n")
        for spec, fragment in [("no_such_module_x", "no module named"),
                               ("specs_c:missing", "no attribute"),
                               ("specs_c:value", "not a WSGI application"),
                               ("specs_c:factory(open('x'))", "must be literals"),
                               ("specs_c:factory(1", "factory call"),
                               ("specs_c:__import__('os').system('x')", "factory call"),
                               ("specs_c:factory(1)", "not a WSGI application"),
                               ("specs_c", "no callable"),
                               ("no/such/file.py:app", "no file")]:
            with self.subTest(spec=spec):
                with self.assertRaisesRegex(runserver.AppSpecError, fragment):
                    runserver.load_app(spec)

    def test_import_error_inside_the_module_is_not_a_spec_error(self):
        self.module("specs_d", "import no_such_dependency_y\n")
        with self.assertRaises(ModuleNotFoundError):
            runserver.load_app("specs_d")


# ---- Command line -----------------------------------------------------------------

class AddrportTests(unittest.TestCase):

    def test_valid_forms(self):
        parse = runserver.parse_addrport
        self.assertEqual(parse(None, False), ("127.0.0.1", 8000, None, False))
        self.assertEqual(parse(None, True), ("::1", 8000, None, True))
        self.assertEqual(parse("8080", False), ("127.0.0.1", 8080, None, False))
        self.assertEqual(parse("0:8000", False), ("0.0.0.0", 8000, None, False))
        self.assertEqual(parse("10.1.2.3:80", False), ("10.1.2.3", 80, None, False))
        self.assertEqual(parse("[::1]:9000", False), ("::1", 9000, None, True))
        self.assertEqual(parse("localhost:0", False), ("localhost", 0, None, False))
        self.assertEqual(parse("unix:/tmp/x.sock", False), (None, None, "/tmp/x.sock", False))
        self.assertEqual(parse("65535", False)[1], 65535)

    def test_invalid_forms(self):
        for addrport, ipv6 in [("8o00", False), ("65536", False), ("999999", False),
                               ("256.1.1.1:80", False), ("1.2.3:80", False), ("[zz]:80", False),
                               ("[::1]", False), ("127.0.0.1:80", True), ("localhost:80", True),
                               ("unix:", False), ("unix:/x.sock", True), (":80", False),
                               ("host:", False), ("-1", False)]:
            with self.subTest(addrport=addrport, ipv6=ipv6):
                with self.assertRaises(runserver.UsageError):
                    runserver.parse_addrport(addrport, ipv6)


class CLITests(CLITestCase):

    def assertOneLineError(self, args, status, fragment):
        code, output = self.run_cli(*args)
        self.assertEqual(code, status, output)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn(fragment, output)
        self.assertNotIn("Traceback", output)

    def test_help_and_version(self):
        code, output = self.run_cli("--help")
        self.assertEqual(code, 0)
        for option in ("--ipv6", "--nothreading", "--noreload", "--no-color", "--quiet",
                       "--debug", "--static", "--cert", "--reload-interval", "--max-body"):
            self.assertIn(option, output)
        code, output = self.run_cli("--version")
        self.assertEqual((code, output.strip()), (0, "runserver.py " + runserver.__version__))

    def test_usage_errors_are_one_line_with_status_2(self):
        self.write("good.py", "def app(e, s): pass\nvalue = 1\ndef make(x): return app\n")
        for args, fragment in [
                (["8o00"], '"8o00" is not a valid port number'),
                (["good:app", "99999"], "0 to 65535"),
                (["good:app", "127.0.0.1:80", "-6"], "-6/--ipv6"),
                (["no_such_module_z:app", "0", "--noreload"], "no module named"),
                (["no_such_module_z:app", "0"], "no module named"),
                (["good:missing", "0", "--noreload"], "no attribute"),
                (["good:value", "0", "--noreload"], "not a WSGI application"),
                (["good:make(1+", "0", "--noreload"], "factory call"),
                (["good:app", "--no-such-option"], "unrecognized arguments"),
                (["good:app", "--cert", "c.pem"], "--cert and --key"),
                (["good:app", "--static", "static"], "URL_PREFIX=DIRECTORY")]:
            with self.subTest(args=args):
                self.assertOneLineError(args, 2, fragment)

    def test_import_error_inside_the_app_shows_its_traceback(self):
        self.write("broken.py", "import no_such_dependency_q\napp = None\n")
        code, output = self.run_cli("broken:app", "0", "--noreload")
        self.assertEqual(code, 1, output)
        self.assertIn("Traceback", output)
        self.assertIn("no_such_dependency_q", output)

    def test_address_in_use_is_one_line_with_status_1(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            self.assertOneLineError(["127.0.0.1:%d" % port, "--noreload"], 1,
                                    "That port is already in use.")

    def test_demo_app_banner_and_graceful_sigterm(self):
        process = self.start("0", "--noreload")
        url = process.wait_for_banner()
        self.assertRegex(url, r"^http://127\.0\.0\.1:\d+/$")
        process.wait_for(r"Quit the server with CONTROL-C\.")
        response = http_get(process.port(), "/hello?x=1")
        self.assertEqual(response.status, 200)
        self.assertIn(b"runserver.py", response.body)
        self.assertIn(b"GET /hello?x=1", response.body)
        page = http_get(process.port(), headers=b"Accept: text/html\r\n")
        self.assertTrue(page.header("content-type").startswith("text/html"))
        process.wait_for(r'"GET /hello\?x=1 HTTP/1.1" 200')
        process.process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(), 0)
        self.assertIn("Server stopped.", process.output())

    def test_factory_spec_and_file_path_from_the_command_line(self):
        self.write("pkg/factory.py",
                   "def create_app(name, excited=False):\n"
                   "    def app(environ, start_response):\n"
                   "        start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                   "        return [(name + ('!' if excited else '')).encode()]\n"
                   "    return app\n")
        process = self.start("pkg/factory.py:create_app('hi', excited=True)", "0", "--noreload")
        self.assertEqual(http_get(process.port()).body, b"hi!")

    def test_sigint_in_noreload_mode_exits_zero(self):
        process = self.start("0", "--noreload")
        process.port()
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)
        self.assertNotIn("Traceback", process.output())
        self.assertIn("Server stopped.", process.output())


if __name__ == "__main__":
    unittest.main()
