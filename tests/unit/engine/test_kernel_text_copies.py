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

"""kernel_text's in-process copy of the baseline: rebuilt right, replaced when stale, bounded."""

import gc
import shutil

from tests.unit.engine.test_syscalls import CodeKernel
from vmi_agent.engine.linux.kernel import LinuxKernel
from vmi_agent.engine.linux.locate import locate
from vmi_agent.engine.memory.ramfile import RamFile
from vmi_agent.engine.probes import image_diff
from vmi_agent.engine.probes.kernel_text import KernelText


def att(fake, path):
    path.mkdir()
    return fake.attach(path)


def same_file(fake):
    memory = RamFile(fake.path)
    prof = fake.profile()
    return LinuxKernel(memory, prof, locate(memory, prof))


def summary(result):
    assert result.error is None, result.error
    return ([(r['region'], r['changed_pages'], r['patched_sites'], r['baseline'])
             for r in result.records],
            [f.to_dict() for f in result.findings])


def test_copy_built_from_a_changed_guest_is_the_baseline(tmp_path):
    fake = CodeKernel()
    ctx = {'state_dir': str(tmp_path / 'state'), 'guest_id': 'g'}
    a = att(fake, tmp_path / 'a')
    assert summary(KernelText(ctx).run(a))[0][0][3] == 'created'
    at = fake.sym('cold_function') + 9
    fake.poke(at, b'\x41')
    fake.poke(fake.sym('sys_call_table') + 8, b'\x99')
    a.flush()
    expected = summary(KernelText(ctx).run(a))         # a: copy kept at capture
    assert expected[1]
    b = att(fake, tmp_path / 'b')                    # new process, same guest
    copies = b.memo(image_diff.BaselineCopies)
    assert copies.held == 0
    assert summary(KernelText(ctx).run(b)) == expected  # hash + build copy
    assert copies.held > 0
    assert summary(KernelText(ctx).run(b)) == expected  # copy
    fake.poke(at, b'\x31')
    b.flush()


def test_replaced_baseline_rebuilds_the_copy(tmp_path):
    fake = CodeKernel()
    state = tmp_path / 'state'
    ctx = {'state_dir': str(state), 'guest_id': 'g'}
    k = att(fake, tmp_path / 'a')
    KernelText(ctx).run(k)
    at = fake.sym('cold_function') + 9
    fake.poke(at, b'\x41')
    k.flush()
    assert summary(KernelText(ctx).run(k))[1]
    # Another process takes a new baseline (the store was reset by an operator).
    other = same_file(fake)
    shutil.rmtree(state)
    assert summary(KernelText(ctx).run(other))[0][0][3] == 'created'
    assert summary(KernelText(ctx).run(k))[1] == []      # k notices: new digests
    fake.poke(at, b'\x31')
    k.flush()
    assert summary(KernelText(ctx).run(k))[1]


def test_budget_is_shared_and_released(tmp_path, monkeypatch):
    monkeypatch.setattr(image_diff, 'COPY_BUDGET', 135168 * 3)
    ctx = {'state_dir': str(tmp_path / 'state')}
    fakes = [CodeKernel() for _ in range(2)]
    kernels = [att(f, tmp_path / str(i)) for i, f in enumerate(fakes)]
    for i, k in enumerate(kernels):
        KernelText(dict(ctx, guest_id=str(i))).run(k)
    held = [k.memo(image_diff.BaselineCopies).held for k in kernels]
    assert held == [135168 * 2, 135168]
    # the second guest past the budget still compares right
    fakes[1].poke(fakes[1].sym('cold_function') + 9, b'\x41')
    kernels[1].flush()
    assert summary(KernelText(dict(ctx, guest_id='1')).run(kernels[1]))[1]
    del kernels[0], fakes[0]
    gc.collect()
    assert sum(c.held for c in image_diff._ALL) == 135168
    KernelText(dict(ctx, guest_id='1')).run(kernels[0])
    assert kernels[0].memo(image_diff.BaselineCopies).held == 135168 * 2
