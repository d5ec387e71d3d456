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

"""The README's first command, the all-in-one demo, runs to a passing report."""

import subprocess
import sys


def test_all_in_one_demo_passes_every_check():
    out = subprocess.run([sys.executable, '-m', 'tools.demo'], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, ('demo failed:\n%s\n%s'
                                 % (out.stdout[-4000:], out.stderr[-4000:]))
    assert 'Report: 5 of 5 checks passed.' in out.stdout, out.stdout[-2000:]
