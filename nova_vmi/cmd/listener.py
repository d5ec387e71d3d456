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

"""``nova-vmi-listener``: stores the agents' notifications in the database."""

from nova_vmi import threading_backend  # noqa: F401  (first: before oslo.messaging)

import sys

from oslo_service import service

from nova_vmi.cmd import common
from nova_vmi import conf as vmi_conf
from nova_vmi import listener


def main(argv=None):
    conf = common.setup(sys.argv[1:] if argv is None else argv, 'nova-vmi',
                        'nova-vmi-listener', vmi_conf.register_all)
    launcher = service.launch(conf, listener.ListenerService(conf), workers=1)
    return launcher.wait()


if __name__ == '__main__':
    sys.exit(main())
