"""
--static-dir: files below the folder are served with their content type;
nothing outside it is, whether asked for with '..' (plain or
percent-encoded), an encoded slash, or through a symlink inside the folder
that points out of it (all 404, like a missing file, so nothing tells what
exists outside). A symlink that stays inside is followed. A file over
--static-max-bytes is 404 too. A file that would
block (a FIFO) does not stop the loop, and answers keep request order on a
pipelined connection while files are read off the loop.
"""

import os

import harness
from harness import GatewayTest, RawHTTP, http_request_bytes, request, scaled

SECRET = b"secret outside the static folder\n"


class StaticTest(GatewayTest):
    def setUp(self):
        super().setUp()
        root = self.cluster.dir
        self.static = os.path.join(root, "static")
        outside = os.path.join(root, "outside")
        os.makedirs(os.path.join(self.static, "sub"))
        os.makedirs(outside)
        files = {
            "index.html": b"<!doctype html><title>t</title>\n",
            "app.js": b"console.log('app');\n",
            "style.css": b"body { margin: 0 }\n",
            "sub/page.txt": b"a page in a sub folder\n",
            "sub/index.html": b"<p>sub index</p>\n",
        }
        for name, data in files.items():
            with open(os.path.join(self.static, name), "wb") as f:
                f.write(data)
        self.files = files
        self.secret = os.path.join(outside, "secret.txt")
        with open(self.secret, "wb") as f:
            f.write(SECRET)
        # out of the folder: an absolute link, a relative one, a linked folder
        os.symlink(self.secret, os.path.join(self.static, "leak.txt"))
        os.symlink("../../outside/secret.txt", os.path.join(self.static, "sub", "rel-leak.txt"))
        os.symlink(outside, os.path.join(self.static, "outdir"))
        # inside the folder: followed
        os.symlink("sub/page.txt", os.path.join(self.static, "alias.txt"))
        self.cluster.start_broker()
        self.gw = self.cluster.start_gateway("--static-dir", self.static)

    def get(self, path):
        return request(self.gw.port, "GET", path)

    def assertNotServed(self, path):
        r = self.get(path)
        self.assertNotIn(b"secret", r.body, "GET %s served the file outside the folder" % path)
        self.assertJSONError(r, 404, "not_found")
        # the answer of a missing file, byte for byte: nothing tells what exists outside
        self.assertEqual(r.body, self.get("/missing.txt").body)

    def test_files_are_served_with_their_content_type(self):
        want = [
            ("/", "index.html", "text/html"),
            ("/index.html", "index.html", "text/html"),
            ("/app.js", "app.js", "text/javascript"),
            ("/style.css", "style.css", "text/css"),
            ("/sub/page.txt", "sub/page.txt", "text/plain"),
            ("/sub/", "sub/index.html", "text/html"),
            ("/sub/pa%67e.txt", "sub/page.txt", "text/plain"),
            ("/alias.txt", "sub/page.txt", "text/plain"),
        ]
        for path, name, ctype in want:
            with self.subTest(path=path):
                r = self.get(path)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, self.files[name])
                self.assertTrue(r.headers["content-type"].startswith(ctype), r)
                self.assertEqual(r.headers.get("cache-control"), "no-cache")
        self.assertJSONError(self.get("/missing.txt"), 404, "not_found")
        self.assertJSONError(self.get("/sub"), 404, "not_found")  # a folder, not a file

    def test_symlink_out_of_the_folder_is_404(self):
        for path in ["/leak.txt", "/sub/rel-leak.txt", "/outdir/secret.txt"]:
            with self.subTest(path=path):
                self.assertNotServed(path)

    def test_dot_dot_and_encoded_traversal_are_404(self):
        for path in ["/../outside/secret.txt", "/sub/../../outside/secret.txt",
                     "/%2e%2e/outside/secret.txt", "/%2E%2e/outside/secret.txt", "/.%2e/outside/secret.txt",
                     "/%2e%2E/outside/secret.txt", "/sub/%2e%2e/%2e%2e/outside/secret.txt",
                     "/..%2foutside%2fsecret.txt", "/..%2Foutside/secret.txt", "/..%5coutside%5csecret.txt",
                     "/%2e%2e%2foutside%2fsecret.txt",
                     # an encoded slash is refused even where it would stay inside
                     "/sub%2fpage.txt", "/sub%2Fpage.txt",
                     # '.' and empty segments too
                     "/./index.html", "/sub/./page.txt", "//index.html", "/sub//page.txt", "/sub/.",
                     "/index.html%00.txt"]:
            with self.subTest(path=path):
                self.assertNotServed(path)

    def test_fifo_does_not_block_the_loop(self):
        os.mkfifo(os.path.join(self.static, "pipe.txt"))
        # opening a FIFO with no writer waits for one: never on the loop thread
        self.assertJSONError(request(self.gw.port, "GET", "/pipe.txt", timeout=scaled(5)), 404, "not_found")
        self.assertEqual(request(self.gw.port, "GET", "/healthz", timeout=scaled(5)).status, 200)

    def test_files_over_static_max_bytes_are_404(self):
        for name, size in [("at.txt", 1024), ("over.txt", 1025)]:
            with open(os.path.join(self.static, name), "wb") as f:
                f.write(b"x" * size)
        gw = self.cluster.start_gateway("--static-dir", self.static, "--static-max-bytes", "1k")
        r = request(gw.port, "GET", "/at.txt")
        self.assertEqual((r.status, len(r.body)), (200, 1024), r)
        self.assertJSONError(request(gw.port, "GET", "/over.txt"), 404, "not_found")
        harness.wait_until(lambda: "larger than --static-max-bytes" in gw.proc.log(), scaled(5),
                           "the gateway to log the file over the limit")

    def test_pipelined_answers_keep_request_order(self):
        c = RawHTTP(self.gw.port)
        try:
            c.send(http_request_bytes("GET", "/app.js") + http_request_bytes("GET", "/healthz")
                   + http_request_bytes("GET", "/missing") + http_request_bytes("GET", "/sub/page.txt")
                   + http_request_bytes("POST", "/api/v1/events", b'{"type":"p"}',
                                        {"Content-Type": "application/json"})
                   + http_request_bytes("GET", "/style.css", keep_alive=False))
            got = [c.read_response() for _ in range(6)]
            self.assertEqual([r.status for r in got], [200, 200, 404, 200, 201, 200], got)
            self.assertEqual(got[0].body, self.files["app.js"])
            self.assertEqual(got[1].json(), {"status": "ok"})
            self.assertEqual(got[3].body, self.files["sub/page.txt"])
            self.assertEqual(got[5].body, self.files["style.css"])
            self.assertEqual(got[5].headers.get("connection"), "close")
            self.assertTrue(c.at_eof(scaled(5)))
        finally:
            c.close()


if __name__ == "__main__":
    harness.main()
