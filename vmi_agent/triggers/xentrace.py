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

"""Streaming parser for the byte stream ``xentrace`` writes.

On patched Xen the guest's trigger instruction becomes a trace record, so the agent learns
about guest triggers by reading ``xentrace``'s output from a pipe. That output is produced
by the hypervisor and a tool we do not control, arrives in arbitrary chunks, and may be
cut short or damaged (a disk filling up, a killed writer, a reader that attaches mid-file),
so the parser here is incremental, keeps a bounded amount of state, and never raises on
bad input: it counts what it could not use and resynchronises.

The format, as Xen 4.17 defines and writes it (little-endian, as on every architecture
Xen 4.17 supports):

* ``xen/include/public/trace.h`` (installed as ``/usr/include/xen/trace.h`` by
  ``libxen-dev``): ``struct t_rec`` is a 32-bit header word ``event:28, extra_u32:3,
  cycles_included:1`` (``TRACE_EXTRA_SHIFT`` 28, ``TRACE_EXTRA_MAX`` 7), then, when
  ``cycles_included``, ``cycles_lo, cycles_hi``, then ``extra_u32`` 32-bit data words.
  ``TRC_GEN`` is ``0x0001f000``; ``TRC_LOST_RECORDS``, ``TRC_TRACE_WRAP_BUFFER`` and
  ``TRC_TRACE_CPU_CHANGE`` are ``TRC_GEN + 1``, ``+ 2`` and ``+ 3``.
* ``tools/xentrace/xentrace.c``, ``write_buffer()``: before each window of one CPU's
  buffer it writes a ``TRC_TRACE_CPU_CHANGE`` record without cycles and with two extra
  words, ``cpu`` and ``byte_count``, and only when ``byte_count`` is non-zero; then exactly
  ``byte_count`` bytes copied from that CPU's trace buffer (a wrapped window is copied with
  two writes but announced once). The file has no other header.
* ``xen/common/trace.c``: ``insert_lost_records()`` writes ``TRC_LOST_RECORDS`` with cycles
  and four extra words: the number lost, ``did`` (low 16 bits) and ``vid`` (high 16 bits),
  and the 64-bit TSC of the first lost record. ``insert_wrap_record()`` pads the end of a
  per-CPU buffer with a ``TRC_TRACE_WRAP_BUFFER`` record whose extra words are not
  initialised, so they carry no meaning.
"""

import dataclasses
import struct
import typing


# -- constants from xen/include/public/trace.h (Xen 4.17) --------------------------------

TRACE_EXTRA_MAX = 7
TRACE_EXTRA_SHIFT = 28
TRC_GEN = 0x0001f000
TRC_LOST_RECORDS = TRC_GEN + 1          # 0x0001f001
TRC_TRACE_WRAP_BUFFER = TRC_GEN + 2     # 0x0001f002
TRC_TRACE_CPU_CHANGE = TRC_GEN + 3      # 0x0001f003
TRC_HVM_HANDLER = 0x00082000
TRC_64_FLAG = 0x100

# Our own event, added by the nova-vmi Xen patch (xen-patch/). Xen 4.17's trace.h uses
# TRC_HVM_HANDLER sub-numbers 0x01-0x1a and 0x20-0x27 (0x126/0x127 are the TRC_64_FLAG
# forms of XCR_READ64/XCR_WRITE64; 0x216/0x217 are IOPORT_WRITE/IOMEM_WRITE). 0x28 is the
# first free number after them. The layout is fixed (see decode_trigger), so there is no
# TRC_64_FLAG variant.
TRC_HVM_VMI_TRIGGER = TRC_HVM_HANDLER + 0x28    # 0x00082028

_EVENT_MASK = (1 << TRACE_EXTRA_SHIFT) - 1
_CYCLES_BIT = 1 << 31
# The exact header word of a window record: no cycles, two extra words.
_CPU_CHANGE_WORD = TRC_TRACE_CPU_CHANGE | (2 << TRACE_EXTRA_SHIFT)
_CPU_CHANGE_MAGIC = struct.pack('<I', _CPU_CHANGE_WORD)
_CPU_CHANGE = struct.Struct('<III')

#: Largest t_rec: header, TSC, seven extra words.
MAX_RECORD_BYTES = 4 + 8 + 4 * TRACE_EXTRA_MAX
#: Most bytes a Parser holds between feed() calls: one incomplete record (a window header,
#: 12 bytes, is shorter).
MAX_BUFFERED = MAX_RECORD_BYTES - 1
#: Default bound on a window's byte count. A window is at most one per-CPU trace buffer,
#: which Xen sizes in pages; a larger count means the header is garbage.
DEFAULT_MAX_WINDOW = 64 * 1024 * 1024
#: Default bound on a window's cpu number, far above any host Xen 4.17 runs on.
DEFAULT_MAX_CPUS = 1 << 16


class TraceFormatError(ValueError):
    """A record does not have the layout its event promises.

    Raised by the decoders (decode_trigger, decode_lost) only; the Parser itself never
    raises on bad input, because one damaged window must not stop the agent hearing later
    triggers.
    """


class Record(typing.NamedTuple):
    """One t_rec, with the cpu of the window it came in."""

    cpu: int
    event: int
    tsc: typing.Optional[int]
    extra: typing.Tuple[int, ...]


class Lost(typing.NamedTuple):
    """A decoded TRC_LOST_RECORDS: Xen's buffer for ``cpu`` was full and dropped records.

    A dropped record may have been a trigger, so the agent must treat a loss as "maybe
    triggered" rather than ignore it.
    """

    cpu: int
    count: int
    domid: int
    vcpu: int
    first_tsc: int


class Trigger(typing.NamedTuple):
    """A decoded TRC_HVM_VMI_TRIGGER record."""

    domid: int
    vcpu: int
    leaf: int
    arg0: int
    arg1: int
    arg2: int
    rip: int


class Truncation(typing.NamedTuple):
    """What close() found missing at the end of the stream."""

    cpu: typing.Optional[int]       # the open window's cpu, None between windows
    buffered_bytes: int             # bytes received but not forming a whole record/header
    window_bytes_missing: int       # bytes the open window announced that never arrived


@dataclasses.dataclass
class Stats:
    """Counters a Parser keeps, so callers can alert on damage and losses."""

    windows: int = 0
    records: int = 0
    errors: int = 0
    garbage_bytes: int = 0
    lost_records: typing.Dict[int, int] = dataclasses.field(default_factory=dict)
    wraps: typing.Dict[int, int] = dataclasses.field(default_factory=dict)


def _header(event, nextra, cycles):
    if not 0 <= event <= _EVENT_MASK:
        raise ValueError('event %#x does not fit in 28 bits' % event)
    if not 0 <= nextra <= TRACE_EXTRA_MAX:
        raise ValueError('a t_rec carries at most %d extra words' % TRACE_EXTRA_MAX)
    return event | (nextra << TRACE_EXTRA_SHIFT) | (_CYCLES_BIT if cycles else 0)


def encode_record(event, extra=(), tsc=None):
    """Encode one t_rec as Xen writes it into a trace buffer.

    The writer exists so tests (ours and the agent's) build streams from the same
    definition the parser reads, instead of hand-assembled bytes.
    """
    words = [_header(event, len(extra), tsc is not None)]
    if tsc is not None:
        words += [tsc & 0xffffffff, (tsc >> 32) & 0xffffffff]
    words += [w & 0xffffffff for w in extra]
    return struct.pack('<%dI' % len(words), *words)


def encode_window(cpu, records):
    """Encode one xentrace window: the cpu_change record, then the records' bytes.

    ``records`` are byte strings from encode_record (or Record tuples, whose cpu is
    ignored).
    """
    body = b''.join(
        encode_record(r.event, r.extra, r.tsc) if isinstance(r, Record) else bytes(r)
        for r in records)
    if not body:
        raise ValueError('xentrace never writes an empty window')
    return _CPU_CHANGE.pack(_CPU_CHANGE_WORD, cpu, len(body)) + body


def encode_trigger(domid, vcpu, leaf, rip, args=(0, 0, 0)):
    """The seven extra words of a TRC_HVM_VMI_TRIGGER record (see decode_trigger)."""
    a0, a1, a2 = args
    return ((domid & 0xffff) | ((vcpu & 0xffff) << 16), leaf & 0xffffffff,
            rip & 0xffffffff, (rip >> 32) & 0xffffffff,
            a0 & 0xffffffff, a1 & 0xffffffff, a2 & 0xffffffff)


def decode_trigger(record):
    """Decode a TRC_HVM_VMI_TRIGGER record into a Trigger.

    Layout of the seven extra words (a t_rec carries at most seven, and the TSC comes
    from the header, so it costs none of them):

    ====  ===================================================================
    word  contents
    ====  ===================================================================
    0     domid (bits 0-15) | vcpu id (bits 16-31), as TRC_LOST_RECORDS packs
          them; lossless, since domid_t is uint16_t and an HVM guest has at
          most 128 vcpus (HVM_MAX_VCPUS)
    1     leaf: the guest's EAX (the VMFUNC leaf)
    2, 3  guest RIP, low then high 32 bits
    4     arg0: low 32 bits of the guest's RDI
    5     arg1: low 32 bits of RSI
    6     arg2: low 32 bits of RDX
    ====  ===================================================================

    What did not fit: the high 32 bits of RDI, RSI and RDX. The arguments are the guest's
    hints (which probes, a request id), and 32 bits each is plenty for that.
    """
    w = _extra_words(record, TRC_HVM_VMI_TRIGGER, 'TRC_HVM_VMI_TRIGGER', 7)
    return Trigger(domid=w[0] & 0xffff, vcpu=w[0] >> 16, leaf=w[1],
                   arg0=w[4], arg1=w[5], arg2=w[6], rip=w[2] | (w[3] << 32))


def _extra_words(record, event, name, count):
    """The record's extra words, after checking it is ``event`` with ``count`` of them."""
    if record.event != event:
        raise TraceFormatError('event %#x is not %s' % (record.event, name))
    if len(record.extra) != count:
        raise TraceFormatError('%s has %d extra words, expected %d'
                               % (name, len(record.extra), count))
    return record.extra


def decode_lost(record):
    """Decode a TRC_LOST_RECORDS record (layout: xen/common/trace.c)."""
    w = _extra_words(record, TRC_LOST_RECORDS, 'TRC_LOST_RECORDS', 4)
    return Lost(cpu=record.cpu, count=w[0], domid=w[1] & 0xffff, vcpu=w[1] >> 16,
                first_tsc=w[2] | (w[3] << 32))


def select(records, events=(TRC_HVM_VMI_TRIGGER,)):
    """Yield the records whose event is in ``events``: the trigger source's filter.

    Xen's event mask (``xentrace -e``) only selects whole classes, so the HVM handler
    class brings many other events; this keeps the ones the agent acts on.
    """
    wanted = frozenset(events)
    return (r for r in records if r.event in wanted)


_HEADER, _WINDOW, _SCAN = 'header', 'window', 'scan'


class Parser:
    """Incremental parser of xentrace output.

    Garbage policy (the stream is untrusted; the parser never raises on it, never loops
    and never buffers more than MAX_BUFFERED bytes between calls):

    * Outside a window the parser expects a window header: the exact header word of a
      TRC_TRACE_CPU_CHANGE record with two extra words and no cycles, a cpu below
      ``max_cpus``, and a byte count that is non-zero, a multiple of 4 and at most
      ``max_window``. Anything else (including a stream that does not start with one) is
      an error.
    * Inside a window, every record whose size fits in what is left of the window is
      yielded, whatever its event: unknown events are normal (new Xen versions and our
      own patch add them). It is an error if a record would cross the window's end, or
      if a TRC_TRACE_CPU_CHANGE record appears inside a window (xentrace never nests
      them; this is what a window cut short by a dying writer looks like).
    * On an error ``stats.errors`` is incremented and the parser resynchronises: it scans
      forward from the byte after the offending header for the next plausible window
      header (as above), at any byte alignment, and counts the bytes it skips in
      ``stats.garbage_bytes``. A nested cpu_change is itself tried as the next window
      header first. A garbage header that happens to look plausible costs at most one
      window's worth of wrong records, never memory.
    """

    def __init__(self, max_window=DEFAULT_MAX_WINDOW, max_cpus=DEFAULT_MAX_CPUS):
        self.max_window = max_window
        self.max_cpus = max_cpus
        self.stats = Stats()
        self._buf = bytearray()
        self._state = _HEADER
        self._cpu = None
        self._remaining = 0
        self._closed = False

    @property
    def buffered(self):
        """Bytes held for the next feed(); at most MAX_BUFFERED."""
        return len(self._buf)

    def _plausible(self, buf, pos):
        word, cpu, count = _CPU_CHANGE.unpack_from(buf, pos)
        return (word == _CPU_CHANGE_WORD and cpu < self.max_cpus
                and 0 < count <= self.max_window and count % 4 == 0)

    def _error(self):
        self.stats.errors += 1
        self._state = _SCAN
        self._cpu = None
        self._remaining = 0

    def feed(self, data):
        """Parse the next chunk; return the records it completed, in stream order."""
        if self._closed:
            raise ValueError('feed() after close()')
        buf = self._buf
        buf += data
        out = []
        pos = 0
        end = len(buf)
        while True:
            if self._state == _SCAN:
                found = buf.find(_CPU_CHANGE_MAGIC, pos)
                while found >= 0 and found + 12 <= end and not self._plausible(buf, found):
                    found = buf.find(_CPU_CHANGE_MAGIC, found + 1)
                if found < 0:
                    # Keep a possible partial magic word at the very end.
                    keep = max(pos, end - 3)
                    self.stats.garbage_bytes += keep - pos
                    pos = keep
                    break
                self.stats.garbage_bytes += found - pos
                pos = found
                if pos + 12 > end:
                    break
                self._state = _HEADER
            if self._state == _HEADER:
                if pos + 12 > end:
                    break
                if not self._plausible(buf, pos):
                    self._error()
                    pos += 1
                    self.stats.garbage_bytes += 1
                    continue
                _word, self._cpu, self._remaining = _CPU_CHANGE.unpack_from(buf, pos)
                self.stats.windows += 1
                self._state = _WINDOW
                pos += 12
                continue
            # Inside a window.
            if self._remaining == 0:
                self._state = _HEADER
                continue
            if pos + 4 > end:
                break
            (word,) = struct.unpack_from('<I', buf, pos)
            event = word & _EVENT_MASK
            nextra = (word >> TRACE_EXTRA_SHIFT) & TRACE_EXTRA_MAX
            cycles = bool(word & _CYCLES_BIT)
            size = 4 + (8 if cycles else 0) + 4 * nextra
            if event == TRC_TRACE_CPU_CHANGE:
                # Possibly the next window after a short one: try it as a header.
                self.stats.errors += 1
                self._state = _HEADER
                self._cpu = None
                self._remaining = 0
                continue
            if size > self._remaining:
                self._error()
                pos += 1
                self.stats.garbage_bytes += 1
                continue
            if pos + size > end:
                break
            words = struct.unpack_from('<%dI' % (size // 4), buf, pos)
            tsc = None
            if cycles:
                tsc = words[1] | (words[2] << 32)
                extra = words[3:]
            else:
                extra = words[1:]
            rec = Record(self._cpu, event, tsc, tuple(extra))
            pos += size
            self._remaining -= size
            self._account(rec)
            out.append(rec)
        del buf[:pos]
        return out

    def _account(self, rec):
        stats = self.stats
        stats.records += 1
        if rec.event == TRC_LOST_RECORDS and len(rec.extra) >= 1:
            stats.lost_records[rec.cpu] = stats.lost_records.get(rec.cpu, 0) + rec.extra[0]
        elif rec.event == TRC_TRACE_WRAP_BUFFER:
            stats.wraps[rec.cpu] = stats.wraps.get(rec.cpu, 0) + 1

    def close(self):
        """End of stream: return a Truncation if it stopped mid-record or mid-window.

        A writer killed mid-write, or a file still being written, ends this way; the
        records before the cut were already returned by feed(). None means a clean end.
        """
        self._closed = True
        buffered = len(self._buf)
        self._buf = bytearray()
        if self._state == _SCAN:
            # Bytes left while scanning were garbage, not a cut-off record.
            self.stats.garbage_bytes += buffered
            return None
        missing = 0
        if self._state == _WINDOW:
            # The buffered bytes belong to the window; count only what never arrived.
            missing = max(0, self._remaining - buffered)
        if buffered == 0 and missing == 0:
            return None
        return Truncation(self._cpu, buffered, missing)
