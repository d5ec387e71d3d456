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

"""``[xen]``: the ``xen`` driver (dom0 on Xen 4.17) and its xentrace trigger source."""

from oslo_config import cfg

from nova_vmi.conf import groups

GROUP = cfg.OptGroup('xen', title='xen driver',
                     help='Guests of the Xen hypervisor this agent runs in dom0 of, read '
                          'through libxenctrl and libxenforeignmemory; guest triggers '
                          'heard through xentrace (needs the xen-patch/ series).')

opts = [
    cfg.StrOpt('xentrace_path', default='/usr/lib/xen-4.17/bin/xentrace',
               help='The xentrace binary the vmfunc trigger source runs.  Debian installs '
                    'it here; /usr/sbin/xentrace is a wrapper that refuses to run '
                    'outside dom0.'),
    cfg.IntOpt('trace_buffer_pages', default=32, min=1, max=65536,
               help='Size of each per-CPU Xen trace buffer in pages (xentrace -S).  Xen '
                    'sets it once per boot: the first tracer decides.'),
    cfg.IntOpt('poll_ms', default=100, min=1, max=10000,
               help='How often xentrace polls the trace buffers, in milliseconds '
                    '(xentrace -s).  The patched hypervisor also wakes it at once with '
                    'VIRQ_TBUF after every trigger record, so this bounds the latency '
                    'only on an unpatched wake path.'),
    cfg.StrOpt('trace_cpu_mask', default=None,
               help='CPUs whose trace buffers xentrace reads (xentrace -c: hex mask or '
                    'ranges).  Unset: all CPUs, which is what guest triggers need.'),
    cfg.IntOpt('restart_delay_max', default=30, min=1, max=3600,
               help='Longest wait, in seconds, before restarting a xentrace that exited; '
                    'the wait doubles from one second after each exit in a row.'),
    cfg.IntOpt('chunk_pages', default=512, min=1, max=65536,
               help='Guest pages mapped with one xenforeignmemory_map call (512 pages '
                    'is 2 MiB).  A read maps the chunk around it and keeps it.'),
    cfg.IntOpt('chunk_cache', default=64, min=1, max=65536,
               help='Most chunks kept mapped per guest; the least recently used one is '
                    'unmapped when another is needed.  Bounds dom0 address space per '
                    'guest to chunk_pages * chunk_cache pages.'),
    cfg.BoolOpt('activate_altp2m', default=True,
                help='When a guest is opened, switch altp2m on for its domain if it is '
                     'off (xc_altp2m_set_domain_state).  Xen enables VMFUNC, and so the '
                     'vmfunc trigger, only for domains with altp2m active; the snapshot '
                     'consistency mode needs it too.  Needs Xen booted with altp2m=1 '
                     'and altp2m="external" in the domain config.'),
    cfg.BoolOpt('snapshot_copy', default=True,
                help='In the snapshot consistency mode, keep a copy of each page before '
                     'the guest first writes it (the vm_event monitor ring, '
                     'libxenevtchn), so that the probes read the memory as it was when '
                     'the snapshot began.  When false, or when the monitor ring cannot '
                     'be set up (no libxenevtchn, another monitor attached, '
                     'xc_monitor_enable fails), writes are only detected: the pages '
                     'the run read that the guest wrote are reported, and a warning '
                     'says why.'),
    cfg.IntOpt('snapshot_max_pages', default=16384, min=1, max=1 << 22,
               help='Most guest pages copied per snapshot run (16384 pages is 64 MiB of '
                    'dom0 memory).  Past it, further pages the guest writes are let '
                    'through uncopied and, if the run read them, reported as written '
                    'while read.  Bounds what a guest that writes a lot can cost dom0.'),
]


def register_opts(conf):
    groups.register(conf, GROUP, opts)


def list_opts():
    return [(GROUP, opts)]
