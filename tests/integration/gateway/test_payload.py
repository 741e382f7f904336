"""
Payloads kept exactly and strict input (issue 14, defects 4-6 and the
nesting limit): a published event reaches its streams byte for byte as
published, whitespace outside strings removed (numbers keep their text:
30-digit integers, 1.0, 1e400, -0), over HTTP and through the broker api
(`roomcast publish`); a body that is not strict JSON in UTF-8 (invalid or
overlong UTF-8, encoded or escaped surrogates, raw control characters in
strings) is 400 with a message naming the field; one nesting limit (64
levels, the event's own object included) on every path, whose error names
the field and the limit.
"""

import json

from harness import GatewayTest, main, post_json, publish

DEPTH = 64  # RC_JSON_MAX_DEPTH


def nested(levels):
    """An event whose object is nested `levels` deep, the event itself included: x holds levels-1 arrays."""
    inner = "[" * (levels - 1) + "]" * (levels - 1)
    return '{"type":"deep","room_id":"r","x":%s}' % inner


class PayloadTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker()
        self.gw = self.cluster.start_gateway()

    def post(self, raw):
        return post_json(self.gw.port, None, raw=raw)

    def assert_streamed_exactly(self, stream, event_id, want):
        """The event event_id reached stream as `data: <want>` (bytes)."""
        got = [e for e in stream.events_until(event_id) if e.id == event_id]
        self.assertEqual(len(got), 1)
        line = b"id: " + event_id.encode() + b"\ndata: " + want + b"\n\n"
        self.assertIn(line, bytes(stream.body_raw), "the stream carries the event byte for byte")

    def assert_nothing_published(self, stream):
        marker = publish(self.gw.port, {"type": "marker"})
        self.assertEqual([e.id for e in stream.events_until(marker)], [marker])

    # -- numbers and strings kept as published --

    def test_numbers_and_strings_kept_exactly_over_http(self):
        c = self.sse(self.gw, "/api/v1/events?room_id=r")
        body = (b'{ "type" : "n", "room_id":"r",\n\t"big": 123456789012345678901234567890,'
                b' "neg":-123456789012345678901234567890, "u64":18446744073709551616,'
                b' "f":1.0, "e":1e400, "ne":-1E-400, "z":-0, "zf":-0.0, "d":0.1, "p":1E+2, "frac":3.14159265358979323846264338327950288,'
                b' "s":"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ \\/ \\t", "raw":"\xf0\x9f\x98\x80",'
                b' "a":[ 1 , 2.50 , {"k" : [ ] } ], "o":{ } , "t":true, "n":null }')
        want = (b'{"type":"n","room_id":"r","big":123456789012345678901234567890,'
                b'"neg":-123456789012345678901234567890,"u64":18446744073709551616,'
                b'"f":1.0,"e":1e400,"ne":-1E-400,"z":-0,"zf":-0.0,"d":0.1,"p":1E+2,"frac":3.14159265358979323846264338327950288,'
                b'"s":"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ \\/ \\t","raw":"\xf0\x9f\x98\x80",'
                b'"a":[1,2.50,{"k":[]}],"o":{},"t":true,"n":null}')
        r = self.post(body)
        self.assertEqual(r.status, 201, r)
        self.assert_streamed_exactly(c, r.json()["id"], want)
        # the same inside an array body
        r = self.post(b'[ {"type":"n","room_id":"r","v":99999999999999999999999999999999} ,\n'
                      b'{"type":"n","room_id":"r","v":-0.000000000000000000000000000001e-999} ]')
        self.assertEqual(r.status, 201, r)
        ids = r.json()["ids"]
        self.assert_streamed_exactly(c, ids[0], b'{"type":"n","room_id":"r","v":99999999999999999999999999999999}')
        self.assert_streamed_exactly(c, ids[1],
                                     b'{"type":"n","room_id":"r","v":-0.000000000000000000000000000001e-999}')

    def test_numbers_kept_exactly_through_the_cli(self):
        c = self.sse(self.gw, "/api/v1/events?room_id=r")
        r = self.cluster.cli("publish", "--room", "r", "--type", "n", "--data",
                             '{"big": 123456789012345678901234567890, "f":1.0, "e":1e400, "z":-0}')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_streamed_exactly(
            c, r.stdout.strip(),
            b'{"type":"n","room_id":"r","big":123456789012345678901234567890,"f":1.0,"e":1e400,"z":-0}')
        # --ndjson lines go to the broker as they are; the broker keeps them too
        line = '{"type":"n", "room_id":"r", "big":-123456789012345678901234567890, "d":0.10}'
        r = self.cluster.cli("publish", "--ndjson", stdin=line + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_streamed_exactly(
            c, r.stdout.strip(), b'{"type":"n","room_id":"r","big":-123456789012345678901234567890,"d":0.10}')

    # -- strict input --

    def assert_400(self, raw, field, why, whole_field=True):
        """400 invalid_json whose message holds why and names field (whole_field: as the whole path)."""
        r = self.post(raw)
        err = self.assertJSONError(r, 400, code="invalid_json")
        self.assertIn(why, err["message"], raw)
        if field:
            self.assertIn(field + (": " if whole_field else ""), err["message"], raw)
        return err

    def test_invalid_utf8_is_400_naming_the_field(self):
        c = self.sse(self.gw, "/api/v1/events")
        cases = [
            (b'{"type":"a","room_id":"r","x":"\xff"}', "x"),  # the example
            (b'{"type":"a","x":"ok","message":{"text":"caf\xe9"}}', "message.text"),  # Latin-1, not UTF-8
            (b'{"type":"a","x":"\xc0\x80"}', "x"),  # overlong NUL
            (b'{"type":"a","x":"\xc1\xbf"}', "x"),  # overlong
            (b'{"type":"a","x":"\xe0\x80\x80"}', "x"),  # overlong 3 bytes
            (b'{"type":"a","x":"\xf0\x80\x80\x80"}', "x"),  # overlong 4 bytes
            (b'{"type":"a","x":"\xed\xa0\x80"}', "x"),  # encoded surrogate U+D800
            (b'{"type":"a","x":"\xed\xbf\xbf"}', "x"),  # encoded surrogate U+DFFF
            (b'{"type":"a","x":"\xf4\x90\x80\x80"}', "x"),  # above U+10FFFF
            (b'{"type":"a","x":"\xf8\x88\x80\x80\x80"}', "x"),  # 5-byte form
            (b'{"type":"a","x":"\xe2\x82"}', "x"),  # truncated before the quote
            (b'{"type":"a","x":["ok","\x80"]}', "x[1]"),  # stray continuation byte
            (b'[{"type":"a"},{"type":"b","y":{"z":"\xfe"}}]', "events[1].y.z"),
        ]
        for raw, field in cases:
            with self.subTest(raw=raw):
                self.assert_400(raw, field, "invalid UTF-8")
        # in keys: the key cannot be quoted back, the object holding it is named
        err = self.assert_400(b'{"type":"a","o":{"k\xff":1}}', "o", "invalid UTF-8")
        self.assertIn("key", err["message"])
        self.assert_400(b'{"type":"a","\xc0\xafx":1}', None, "invalid UTF-8")
        self.assert_nothing_published(c)

    def test_escaped_lone_surrogates_are_400(self):
        for raw, field in [(b'{"type":"a","x":"\\ud800"}', "x"), (b'{"type":"a","x":"\\uDC00 z"}', "x"),
                           (b'{"type":"a","x":"\\ud800\\u0041"}', "x"), (b'{"type":"a","x":"\\ude00\\ud83d"}', "x"),
                           (b'{"type":"a","o":{"a":["\\udbff"]}}', "o.a[0]")]:
            with self.subTest(raw=raw):
                self.assert_400(raw, field, "surrogate")
        r = self.post(b'{"type":"a","x":"\\ud83d\\ude00"}')  # a pair is one character
        self.assertEqual(r.status, 201, r)

    def test_raw_control_characters_in_strings_are_400(self):
        c = self.sse(self.gw, "/api/v1/events")
        for ch in [b"\t", b"\n", b"\r", b"\x00", b"\x01", b"\x1b", b"\x1f"]:
            with self.subTest(ch=ch):
                self.assert_400(b'{"type":"a","msg":{"text":"a' + ch + b'b"}}', "msg.text", "control character")
        self.assert_400(b'{"type":"a","o":{"k\tey":1}}', "o", "control character")
        self.assert_nothing_published(c)
        # as escapes they are fine, and kept as written; DEL (0x7f) is not a control character in JSON
        c = self.sse(self.gw, "/api/v1/events")
        r = self.post(b'{"type":"a",\t"x":"\\t\\n\\u0000\\u001f\x7f"\r\n}')
        self.assertEqual(r.status, 201, r)
        self.assert_streamed_exactly(c, r.json()["id"], b'{"type":"a","x":"\\t\\n\\u0000\\u001f\x7f"}')

    def test_duplicate_type_or_room_id_is_400(self):
        for raw, field in [(b'{"type":"a","type":"b"}', "type"),
                           (b'{"type":"a","room_id":"r","x":1,"room_id":"s"}', "room_id"),
                           (b'{"type":"a","typ\\u0065":"b"}', "type")]:
            with self.subTest(raw=raw):
                r = self.post(raw)
                err = self.assertJSONError(r, 400, code="invalid_event")
                self.assertTrue(err["message"].startswith(field), err)
        # other duplicate keys are the publisher's business: kept as published
        c = self.sse(self.gw, "/api/v1/events")
        r = self.post(b'{"type":"a","x":1,"x":2}')
        self.assertEqual(r.status, 201, r)
        self.assert_streamed_exactly(c, r.json()["id"], b'{"type":"a","x":1,"x":2}')

    # -- one nesting limit --

    def test_nesting_limit_is_the_same_everywhere(self):
        c = self.sse(self.gw, "/api/v1/events?room_id=r")
        # HTTP, one event and in an array
        r = self.post(nested(DEPTH).encode())
        self.assertEqual(r.status, 201, r)
        self.assert_streamed_exactly(c, r.json()["id"], nested(DEPTH).encode())
        r = self.post(("[" + nested(DEPTH) + "]").encode())
        self.assertEqual(r.status, 201, r)
        # the message names the field (its path is cut when long) and the limit
        self.assert_400(nested(DEPTH + 1).encode(), "body is not valid JSON: x[0][0][0]", "deeper than 64",
                        whole_field=False)
        self.assert_400(("[" + nested(DEPTH + 1) + "]").encode(), "events[0].x[0][0]", "deeper than 64",
                        whole_field=False)
        # the broker api, as the CLI sends it
        r = self.cluster.cli("publish", "--ndjson", stdin=nested(DEPTH) + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_streamed_exactly(c, r.stdout.strip(), nested(DEPTH).encode())
        r = self.cluster.cli("publish", "--ndjson", stdin=nested(DEPTH + 1) + "\n")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("events[0].x", r.stderr)
        self.assertIn("deeper than 64", r.stderr)


if __name__ == "__main__":
    main()
