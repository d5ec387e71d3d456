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

"""What the agent holds for each guest between runs.

Attaching the engine (finding the kernel, loading its profile) costs milliseconds to
seconds; a run costs well under that.  So a guest keeps its driver handle and its
attached kernel across runs, and lets them go only when the guest vanishes or the kernel
stops making sense (a reboot moves KASLR).
"""

import logging
import threading

from vmi_agent.engine.attach import attach

LOG = logging.getLogger(__name__)


class GuestState:
    """One guest: its driver info, its open handle and attached kernel, its limiter.

    ``lock`` is held by the run that uses the handle, and by whoever closes it.
    """

    def __init__(self, info, bucket):
        self.info = info
        self.bucket = bucket
        self.lock = threading.Lock()
        self.handle = None
        self.kernel = None

    def attached_kernel(self, driver, profile_dir):
        """The engine's ``LinuxKernel`` for this guest, opening and attaching as needed."""
        if self.handle is None:
            self.handle = driver.open(self.info)
        if self.kernel is None:
            self.kernel = attach(self.handle.memory, profile_dir=profile_dir)
            LOG.info('attached to %s: Linux %s, KASLR shift 0x%x', self.info.uuid,
                     self.kernel.release, self.kernel.kaslr_shift)
        return self.kernel

    def forget_kernel(self):
        """Attach again next time (the guest may have rebooted)."""
        self.kernel = None

    def close(self):
        """Release the handle (call with ``lock`` held, or when no run can start)."""
        self.kernel = None
        if self.handle is not None:
            try:
                self.handle.close()
            except Exception:
                LOG.exception('closing the handle of %s', self.info.uuid)
            self.handle = None
