"""
test_layering.py - the gateway's dependency rules, checked on the sources.

- A macro is defined once across gateway/ and common/ (GW_READBUF_SIZE was
  defined in main.c and conn.c with the same value, free to drift apart).
- The loop's plumbing (timer, connection, request, output, response) does not
  include the modules above it (router, stream, hub, publish, repair): they
  plug callbacks into it instead.
- No gateway module calls main.c: main.c exports nothing the others use
  (gw_timer_arm was, and main.c decided which lists expire).
- Only main.c names the router (gw_route): it hands it to the connections.

Runs on the source tree (RC_SOURCE_DIR, default: two folders up); no build.
"""

import os
import re
import sys
import unittest

SRC = os.environ.get("RC_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GATEWAY = os.path.join(SRC, "gateway")
COMMON = os.path.join(SRC, "common")

PLUMBING = ("timer", "conn", "request", "output", "response")
ABOVE = ("router", "stream", "hub", "publish", "repair", "assembler", "static")


def sources(folder, exts=(".c", ".h")):
    for name in sorted(os.listdir(folder)):
        if name.endswith(exts):
            yield name, os.path.join(folder, name)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


class LayeringTest(unittest.TestCase):
    def test_macros_are_defined_once(self):
        where = {}
        for folder in (GATEWAY, COMMON):
            for name, path in sources(folder):
                for m in re.finditer(r"^\s*#\s*define\s+([A-Za-z_][A-Za-z0-9_]*)", read(path), re.M):
                    macro = m.group(1)
                    if macro.endswith("_H"):
                        continue  # include guards
                    where.setdefault(macro, []).append(os.path.relpath(path, SRC))
        twice = {k: v for k, v in where.items() if len(v) > 1}
        self.assertEqual(twice, {}, "macros defined in more than one place")

    def test_plumbing_does_not_include_the_modules_above(self):
        bad = []
        for base in PLUMBING:
            for ext in (".c", ".h"):
                path = os.path.join(GATEWAY, base + ext)
                if not os.path.exists(path):
                    continue
                for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)\.h"', read(path), re.M):
                    if inc in ABOVE:
                        bad.append("%s%s includes %s.h" % (base, ext, inc))
        self.assertEqual(bad, [])

    def test_no_module_calls_main(self):
        main = strip_comments(read(os.path.join(GATEWAY, "main.c")))
        # main.c's functions that are not static (main itself aside)
        exported = [f for f in re.findall(r"^(?!static\b)[A-Za-z_][\w \*]*?\b([a-z_][a-z0-9_]*)\s*\([^;{]*\)\s*\{", main, re.M)
                    if f != "main"]
        self.assertEqual(exported, [], "main.c exports functions")
        # and no header declares a function that only main.c defines
        defined_elsewhere = set()
        for name, path in sources(GATEWAY, (".c",)):
            if name == "main.c":
                continue
            defined_elsewhere.update(re.findall(r"^[A-Za-z_][\w \*]*?\b(gw_[a-z0-9_]+)\s*\([^;{]*\)\s*\{",
                                                strip_comments(read(path)), re.M))
        declared = set()
        for name, path in sources(GATEWAY, (".h",)):
            declared.update(re.findall(r"\b(gw_[a-z0-9_]+)\s*\([^;{)]*\)\s*;", strip_comments(read(path))))
        main_defined = set(re.findall(r"^static[\w \*]*?\b(gw_[a-z0-9_]+)\s*\(", main, re.M))
        self.assertEqual(sorted(declared & main_defined - defined_elsewhere), [],
                         "headers declare functions that main.c defines")

    def test_only_main_names_the_router(self):
        bad = []
        for name, path in sources(GATEWAY, (".c",)):
            if name in ("main.c", "router.c"):
                continue
            text = strip_comments(read(path))
            if re.search(r'#\s*include\s+"router\.h"', read(path)) or re.search(r"\bgw_route\w*\s*\(", text):
                bad.append(name)
        self.assertEqual(bad, [], "modules that call the router by name")


if __name__ == "__main__":
    unittest.main(verbosity=2)
