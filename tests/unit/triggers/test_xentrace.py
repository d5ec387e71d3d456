# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Tests for the xentrace stream parser.

Streams are built with the module's own writer, whose constants are checked against Xen's
public trace.h, so a mistake in the shared definition cannot hide behind the round trip.
"""

import os
import re

from hypothesis import HealthCheck, given, settings, strategies as hst
import pytest

from vmi_agent.triggers import xentrace as xt

TRACE_H = '/usr/include/xen/trace.h'

TSC = 0x123456789abcdef0


def _sample_records():
    return [
        xt.encode_record(0x00081002, (1, 2, 3), tsc=TSC),
        xt.encode_record(0x00082001),
        xt.encode_record(0x0fffffff, tuple(range(7)), tsc=(1 << 64) - 1),
        xt.encode_record(xt.TRC_HVM_VMI_TRIGGER,
                         xt.encode_trigger(5, 1, 0x56, 0xffffffff81000000, (7, 8, 9)),
                         tsc=TSC + 1),
        xt.encode_record(0x00021011, (42,)),
    ]


def _stream():
    recs = _sample_records()
    return (xt.encode_window(0, recs[:3]) + xt.encode_window(3, recs[3:])
            + xt.encode_window(1, recs[1:2]))


def _parse_all(data, chunks=None):
    p = xt.Parser()
    out = []
    if chunks is None:
        chunks = [data]
    for c in chunks:
        out += p.feed(c)
        assert p.buffered <= xt.MAX_BUFFERED
    return p, out, p.close()


# -- constants against Xen's header ----------------------------------------------------

def _trace_h_defines():
    raw = {}
    with open(TRACE_H) as f:
        for line in f:
            m = re.match(r'#define\s+(\w+)\s+(.+?)\s*(/\*.*)?$', line)
            if m:
                raw[m.group(1)] = m.group(2)
    values = {}

    def value(name, depth=0):
        if name in values:
            return values[name]
        expr = raw[name]
        if depth > 10 or not re.fullmatch(r'[\w\s()+|<>x-]+', expr):
            raise KeyError(name)
        expr = re.sub(r'\b[A-Za-z_]\w*\b', lambda m: str(value(m.group(0), depth + 1)), expr)
        if not re.fullmatch(r'[0-9a-fA-Fx\s()+|<>-]+', expr):
            raise KeyError(name)
        values[name] = eval(expr, {'__builtins__': {}})  # noqa: S307 -- digits and ops only
        return values[name]

    for name in raw:
        try:
            value(name)
        except (KeyError, SyntaxError):
            pass
    return values, open(TRACE_H).read()


@pytest.mark.skipif(not os.path.exists(TRACE_H), reason='libxen-dev not installed')
def test_constants_match_xen_trace_h():
    d, text = _trace_h_defines()
    for name in ('TRC_GEN', 'TRC_LOST_RECORDS', 'TRC_TRACE_WRAP_BUFFER',
                 'TRC_TRACE_CPU_CHANGE', 'TRC_HVM_HANDLER', 'TRC_64_FLAG',
                 'TRACE_EXTRA_MAX', 'TRACE_EXTRA_SHIFT'):
        assert getattr(xt, name) == d[name], name
    assert d['TRC_LOST_RECORDS'] == 0x0001f001
    assert d['TRC_TRACE_WRAP_BUFFER'] == 0x0001f002
    assert d['TRC_TRACE_CPU_CHANGE'] == 0x0001f003
    for field in ('uint32_t event:28;', 'uint32_t extra_u32:3;',
                  'uint32_t cycles_included:1;', 'uint32_t cycles_lo, cycles_hi;'):
        assert field in text
    # Our trigger is in the HVM handler class and collides with nothing Xen defines.
    assert xt.TRC_HVM_VMI_TRIGGER & ~0xfff == d['TRC_HVM_HANDLER']
    taken = {v for k, v in d.items() if k.startswith('TRC_')}
    assert xt.TRC_HVM_VMI_TRIGGER not in taken
    handler_subs = {v - d['TRC_HVM_HANDLER'] for k, v in d.items()
                    if k.startswith('TRC_HVM_') and v & ~0xfff == d['TRC_HVM_HANDLER']}
    assert max(s & 0xff for s in handler_subs) < xt.TRC_HVM_VMI_TRIGGER & 0xff


# -- writer and round trip -------------------------------------------------------------

def test_encode_record_layout():
    b = xt.encode_record(0x00082001, (0xaabbccdd,), tsc=0x1122334455667788)
    # event | extra_u32 << 28 | cycles_included << 31, cycles_lo, cycles_hi, extra
    assert b == bytes.fromhex('01200890' '88776655' '44332211' 'ddccbbaa')
    assert xt.encode_record(0x1f003, (0, 0)) == bytes.fromhex('03f00120') + bytes(8)
    with pytest.raises(ValueError):
        xt.encode_record(1, tuple(range(8)))
    with pytest.raises(ValueError):
        xt.encode_record(1 << 28)
    with pytest.raises(ValueError):
        xt.encode_window(0, [])


def test_window_header_is_what_xentrace_writes():
    w = xt.encode_window(7, [xt.encode_record(0x00082001)])
    # TRC_TRACE_CPU_CHANGE | 2 << TRACE_EXTRA_SHIFT, cpu, byte_count (xentrace.c)
    assert w[:12] == bytes.fromhex('03f00120' '07000000' '04000000')


def test_round_trip():
    recs = _sample_records()
    p, out, tail = _parse_all(_stream())
    assert tail is None
    assert [r.cpu for r in out] == [0, 0, 0, 3, 3, 1]
    assert out[0] == xt.Record(0, 0x00081002, TSC, (1, 2, 3))
    assert out[1] == xt.Record(0, 0x00082001, None, ())
    assert out[2] == xt.Record(0, 0x0fffffff, (1 << 64) - 1, tuple(range(7)))
    assert [xt.encode_record(r.event, r.extra, r.tsc) for r in out] == recs + recs[1:2]
    assert p.stats.windows == 3 and p.stats.records == 6
    assert p.stats.errors == 0 and p.stats.garbage_bytes == 0


def test_every_split_point():
    data = _stream()
    _, whole, _ = _parse_all(data)
    for i in range(len(data) + 1):
        _, out, tail = _parse_all(data, [data[:i], b'', data[i:]])
        assert out == whole and tail is None, i


def test_byte_at_a_time():
    data = _stream()
    _, whole, _ = _parse_all(data)
    p, out, tail = _parse_all(data, [data[i:i + 1] for i in range(len(data))])
    assert out == whole and tail is None


# -- special records -------------------------------------------------------------------

def test_lost_records_and_wrap():
    lost = xt.encode_record(xt.TRC_LOST_RECORDS, (17, 3 | 2 << 16, 0x9abc, 0x5), tsc=TSC)
    wrap = xt.encode_record(xt.TRC_TRACE_WRAP_BUFFER, (0xdead,) * 7, tsc=TSC)
    data = (xt.encode_window(2, [lost, wrap]) + xt.encode_window(2, [lost])
            + xt.encode_window(0, [wrap]))
    p, out, tail = _parse_all(data)
    assert tail is None
    assert [r.event for r in out] == [xt.TRC_LOST_RECORDS, xt.TRC_TRACE_WRAP_BUFFER,
                                      xt.TRC_LOST_RECORDS, xt.TRC_TRACE_WRAP_BUFFER]
    assert xt.decode_lost(out[0]) == xt.Lost(cpu=2, count=17, domid=3, vcpu=2,
                                             first_tsc=0x500009abc)
    assert p.stats.lost_records == {2: 34}
    assert p.stats.wraps == {2: 1, 0: 1}
    with pytest.raises(xt.TraceFormatError):
        xt.decode_lost(out[1])
    with pytest.raises(xt.TraceFormatError):
        xt.decode_lost(out[0]._replace(extra=(1,)))


# -- trigger ---------------------------------------------------------------------------

def test_trigger_constant_and_decode():
    assert xt.TRC_HVM_VMI_TRIGGER == 0x00082028
    extra = xt.encode_trigger(0x7ff0, 127, 0x56, 0xffffffff81234567,
                              (0xffffffff, 1, 0x123456789))
    assert len(extra) <= xt.TRACE_EXTRA_MAX
    rec = xt.Record(0, xt.TRC_HVM_VMI_TRIGGER, TSC, extra)
    t = xt.decode_trigger(rec)
    assert t == xt.Trigger(domid=0x7ff0, vcpu=127, leaf=0x56, arg0=0xffffffff, arg1=1,
                           arg2=0x23456789, rip=0xffffffff81234567)
    assert tuple(t) == (0x7ff0, 127, 0x56, 0xffffffff, 1, 0x23456789, 0xffffffff81234567)
    with pytest.raises(xt.TraceFormatError):
        xt.decode_trigger(rec._replace(event=xt.TRC_HVM_VMI_TRIGGER + 1))
    with pytest.raises(xt.TraceFormatError):
        xt.decode_trigger(rec._replace(extra=extra[:6]))


def test_select_keeps_triggers_only():
    _, out, _ = _parse_all(_stream())
    trig = list(xt.select(out))
    assert len(trig) == 1 and trig[0].cpu == 3 and trig[0].tsc == TSC + 1
    assert xt.decode_trigger(trig[0]).rip == 0xffffffff81000000
    assert len(list(xt.select(out, (0x00082001,)))) == 2


# -- truncation ------------------------------------------------------------------------

def test_truncated_mid_record():
    data = _stream()
    first = xt.encode_window(0, _sample_records()[:3])
    cut = first[:12 + 24 + 2]           # header, first record (24 bytes), 2 bytes more
    p, out, tail = _parse_all(cut)
    assert len(out) == 1
    assert tail == xt.Truncation(cpu=0, buffered_bytes=2,
                                 window_bytes_missing=len(first) - len(cut))
    _, _, tail = _parse_all(data[:5])
    assert tail == xt.Truncation(cpu=None, buffered_bytes=5, window_bytes_missing=0)


def test_truncated_at_record_boundary_reports_missing_window_bytes():
    first = xt.encode_window(0, _sample_records()[:3])
    _, out, tail = _parse_all(first[:12 + 24])
    assert len(out) == 1
    assert tail == xt.Truncation(0, 0, len(first) - 36)


def test_feed_after_close():
    p = xt.Parser()
    assert p.close() is None
    with pytest.raises(ValueError):
        p.feed(b'')


# -- garbage ---------------------------------------------------------------------------

GOOD = xt.encode_window(4, [xt.encode_record(0x00082001, (9,))])
GOOD_REC = xt.Record(4, 0x00082001, None, (9,))


@pytest.mark.parametrize('junk', [
    b'x', b'\x00' * 13, b'\x03\xf0\x01', b'\x03\xf0\x01\x20' + b'\xff' * 8,
    bytes(range(256)),
])
def test_stream_not_starting_with_cpu_change(junk):
    p, out, tail = _parse_all(junk + GOOD)
    assert out == [GOOD_REC] and tail is None
    assert p.stats.errors == 1 and p.stats.garbage_bytes == len(junk)


@pytest.mark.parametrize('cpu,count', [
    (0, 6),                          # not a multiple of 4
    (0, 0),                          # xentrace never writes an empty window
    (0, xt.DEFAULT_MAX_WINDOW + 4),  # beyond the bound
    (xt.DEFAULT_MAX_CPUS, 8),        # implausible cpu
])
def test_bad_window_header(cpu, count):
    bad = xt._CPU_CHANGE.pack(xt._CPU_CHANGE_WORD, cpu, count)
    p, out, tail = _parse_all(bad + GOOD)
    assert out == [GOOD_REC] and tail is None
    assert p.stats.errors == 1 and p.stats.garbage_bytes == 12


def test_record_crossing_window_end():
    rec = xt.encode_record(0x00082001, (1, 2))
    ok = xt.encode_record(0x00082002)
    # The window announces 8 bytes: ``ok`` fits, the 12-byte record does not.
    bad = xt._CPU_CHANGE.pack(xt._CPU_CHANGE_WORD, 1, 8) + ok + rec
    p, out, tail = _parse_all(bad + GOOD)
    assert out == [xt.Record(1, 0x00082002, None, ()), GOOD_REC] and tail is None
    assert p.stats.errors == 1 and p.stats.garbage_bytes == len(rec)


def test_short_window_followed_by_next_window():
    # A writer died after 4 of the 8 announced bytes; the next window starts at once.
    short = xt._CPU_CHANGE.pack(xt._CPU_CHANGE_WORD, 1, 8) + xt.encode_record(0x82002)
    p, out, tail = _parse_all(short + GOOD)
    assert out == [xt.Record(1, 0x82002, None, ()), GOOD_REC] and tail is None
    assert p.stats.errors == 1 and p.stats.garbage_bytes == 0


def test_unknown_events_are_yielded():
    rec = xt.encode_record(0x0abcdef, (1,), tsc=5)
    _, out, _ = _parse_all(xt.encode_window(0, [rec]))
    assert out == [xt.Record(0, 0x0abcdef, 5, (1,))]


def test_garbage_does_not_accumulate():
    p = xt.Parser()
    for _ in range(1000):
        assert p.feed(b'\x03\xf0\x01\x20\xff\xff\xff\xff' * 16) == []
        assert p.buffered <= xt.MAX_BUFFERED
    assert p.feed(GOOD) == [GOOD_REC]


# -- fuzz ------------------------------------------------------------------------------

def _check(data, cuts):
    """Parse ``data`` whole and in pieces: no exception, bounded, same outcome."""
    p1, whole, tail1 = _parse_all(data)
    chunks = []
    prev = 0
    for c in sorted(set(min(c, len(data)) for c in cuts)) + [len(data)]:
        chunks.append(data[prev:c])
        prev = c
    p2, pieces, tail2 = _parse_all(data, chunks)
    assert pieces == whole and tail1 == tail2 and p1.stats == p2.stats
    assert len(whole) <= len(data) // 4
    for r in whole:
        assert 0 <= r.event < 1 << 28 and len(r.extra) <= 7
    return whole


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=hst.binary(max_size=600), cuts=hst.lists(hst.integers(0, 600), max_size=8))
def test_fuzz_random_bytes(data, cuts):
    _check(data, cuts)


_records = hst.builds(
    xt.encode_record,
    hst.integers(0, (1 << 28) - 1).filter(lambda e: e != xt.TRC_TRACE_CPU_CHANGE),
    hst.lists(hst.integers(0, (1 << 32) - 1), max_size=7).map(tuple),
    hst.none() | hst.integers(0, (1 << 64) - 1))
_windows = hst.builds(xt.encode_window, hst.integers(0, 7),
                      hst.lists(_records, min_size=1, max_size=5))


@FUZZ
@given(windows=hst.lists(_windows, min_size=1, max_size=4),
       edits=hst.lists(hst.tuples(hst.sampled_from('flip ins del'), hst.integers(0, 10 ** 4),
                                  hst.integers(0, 255)), max_size=6),
       cuts=hst.lists(hst.integers(0, 2000), max_size=8))
def test_fuzz_mutated_valid_streams(windows, edits, cuts):
    data = bytearray(b''.join(windows))
    _check(bytes(data), cuts)
    for op, where, byte in edits:
        i = where % (len(data) + 1)
        if op == 'ins':
            data[i:i] = bytes([byte])
        elif data and i < len(data):
            if op == 'flip':
                data[i] ^= byte or 1
            else:
                del data[i]
    _check(bytes(data), cuts)


@FUZZ
@given(windows=hst.lists(_windows, min_size=1, max_size=4),
       junk=hst.binary(max_size=40).filter(lambda j: xt._CPU_CHANGE_MAGIC not in j),
       cuts=hst.lists(hst.integers(0, 2000), max_size=8))
def test_fuzz_recovers_after_junk(windows, junk, cuts):
    """A valid stream after junk holding no cpu_change header word parses in full.

    (Junk that does hold a plausible header is a window of wrong records; see
    test_plausible_fake_header.)
    """
    clean = _check(b''.join(windows), [])
    assert _check(junk + b''.join(windows), cuts) == clean


def test_plausible_fake_header():
    """A fake header costs its own window's records, and the real header inside ends it."""
    fake = xt._CPU_CHANGE.pack(xt._CPU_CHANGE_WORD, 9, 64)
    p, out, tail = _parse_all(fake + GOOD)
    assert out == [GOOD_REC] and tail is None
    assert p.stats.windows == 2 and p.stats.errors == 1
