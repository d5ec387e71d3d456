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

"""``vmi-agent``: the introspection agent of a compute host."""

from nova_vmi import threading_backend  # noqa: F401  (first: before oslo.messaging)

import sys

from oslo_service import service

from nova_vmi.cmd import common
from vmi_agent import conf as agent_conf
from vmi_agent.drivers.base import DriverError
from vmi_agent.service import AgentService, load_driver


def main(argv=None):
    conf = common.setup(sys.argv[1:] if argv is None else argv, 'vmi-agent', 'vmi-agent',
                        agent_conf.register_all)
    try:
        load_driver(conf).close()   # fail here, in one line, not in a forked worker
    except DriverError as exc:
        sys.stderr.write('vmi-agent: error: %s\n' % exc)
        return 2
    launcher = service.launch(conf, AgentService(conf), workers=1)
    return launcher.wait()


if __name__ == '__main__':
    sys.exit(main())
