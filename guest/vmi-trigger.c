// SPDX-License-Identifier: Apache-2.0
/*
 * vmi-trigger: the guest side of the nova-vmi guest trigger.
 *
 * One cheap instruction tells the host that the guest wants to be introspected:
 *
 *   vmi-trigger [--port P] [BYTE]         outb BYTE's low byte (default 'T') to port P
 *                                         (default 0x402, QEMU's isa-debugcon)
 *   vmi-trigger --vmfunc [A0 [A1 [A2 [A3]]]]
 *                                         VMFUNC, EAX = VMI_VMFUNC_LEAF,
 *                                         RDI/RSI/RDX/RCX = A0..A3 (patched Xen)
 *   vmi-trigger --rdtsc [A0 [A1 [A2]]]    RDTSC, RCX = VMI_RDTSC_MAGIC,
 *                                         RDI/RSI/R8 = A0..A2 (Xen TSC emulation)
 *
 * Arguments are integers (C syntax: 90, 0x5a, 0132); missing ones are 0.
 * Exit status: 0 done, 1 no I/O permission, 2 usage error, 3 VMFUNC raised #UD
 * (no hypervisor here handles the VMI leaf).  See README.md.
 *
 * Build: gcc -static -Os -s -o vmi-trigger vmi-trigger.c   (or: make)
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <unistd.h>

/*
 * The VMFUNC leaf (EAX) that the nova-vmi Xen patch (xen-patch/) reserves for the
 * trigger: XEN_VMI_VMFUNC_LEAF in its public/trace.h; this copy must match it.  The
 * SDM: VMFUNC with EAX >= 64 is #UD without a VM exit, and a leaf 0-63 whose
 * VM-function control bit is clear exits (reason 59).  Leaf 0 is EPTP switching and
 * 1-63 are reserved; 63 is the one Intel is least likely to define.
 */
#ifndef VMI_VMFUNC_LEAF
#define VMI_VMFUNC_LEAF 0x3f
#endif

/* RCX at an intercepted RDTSC that marks a trigger ('VMIT'); RDTSC writes only EDX:EAX. */
#ifndef VMI_RDTSC_MAGIC
#define VMI_RDTSC_MAGIC 0x564d4954UL
#endif

#define STR_(x) #x
#define STR(x) STR_(x)

#define DEFAULT_PORT 0x402
#define DEFAULT_BYTE 'T'

static void say(const char *a, const char *b)
{
	/* One line on stderr, in one write(). */
	char buf[256];
	size_t n = 0, len;

	len = strlen(a);
	if (len > 200)
		len = 200;
	memcpy(buf, a, len);
	n = len;
	len = strlen(b);
	if (len > sizeof(buf) - 1 - n)
		len = sizeof(buf) - 1 - n;
	memcpy(buf + n, b, len);
	n += len;
	buf[n++] = '\n';
	if (write(2, buf, n) < 0)
		return;
}

static void usage(const char *why)
{
	say(why, "; usage: vmi-trigger [--vmfunc | --rdtsc | --port P] [ARG ...]");
	_exit(2);
}

static int number(const char *s, unsigned long *value)
{
	char *end;

	if (*s == '\0' || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	*value = strtoul(s, &end, 0);
	return (errno || *end) ? -1 : 0;
}

static void on_sigill(int sig)
{
	(void)sig;
	say("vmi-trigger: VMFUNC raised #UD (SIGILL): no hypervisor here handles VMI leaf ",
	    STR(VMI_VMFUNC_LEAF));
	_exit(3);
}

static void do_vmfunc(const unsigned long *a)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigill;
	sigaction(SIGILL, &sa, NULL);
	/* The Xen trace record carries RDI, RSI, RDX (vmi_agent/triggers/xentrace.py). */
	register unsigned long rdi __asm__("rdi") = a[0];
	register unsigned long rsi __asm__("rsi") = a[1];
	register unsigned long rdx __asm__("rdx") = a[2];
	register unsigned long rcx __asm__("rcx") = a[3];
	unsigned long rax = VMI_VMFUNC_LEAF;

	__asm__ volatile(".byte 0x0f, 0x01, 0xd4"	/* vmfunc */
			 : "+a"(rax), "+r"(rcx), "+r"(rdi), "+r"(rsi), "+r"(rdx)
			 : : "memory");
}

static void do_rdtsc(const unsigned long *a)
{
	register unsigned long rcx __asm__("rcx") = VMI_RDTSC_MAGIC;
	register unsigned long rdi __asm__("rdi") = a[0];
	register unsigned long rsi __asm__("rsi") = a[1];
	register unsigned long r8 __asm__("r8") = a[2];
	unsigned long rax, rdx;

	__asm__ volatile("rdtsc"
			 : "=a"(rax), "=d"(rdx), "+r"(rcx), "+r"(rdi), "+r"(rsi), "+r"(r8)
			 : : "memory");
}

static int do_port(unsigned long port, unsigned long byte)
{
	int rc = port + 1 <= 0x400 ? ioperm(port, 1, 1) : iopl(3);

	if (rc != 0) {
		say("vmi-trigger: no permission for the I/O port: ", strerror(errno));
		return 1;
	}
	outb((unsigned char)byte, (unsigned short)port);
	return 0;
}

int main(int argc, char **argv)
{
	enum { PORT, VMFUNC, RDTSC } mode = PORT;
	static const int max_args[] = { 1, 4, 3 };
	unsigned long port = DEFAULT_PORT, a[4] = { DEFAULT_BYTE, 0, 0, 0 };
	int i = 1, n, modes = 0;

	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else if (strcmp(argv[i], "--vmfunc") == 0) {
			mode = VMFUNC;
		} else if (strcmp(argv[i], "--rdtsc") == 0) {
			mode = RDTSC;
		} else if (strcmp(argv[i], "--port") == 0) {
			mode = PORT;
			if (++i == argc || number(argv[i], &port) || port > 0xffff)
				usage("vmi-trigger: --port needs a port number up to 0xffff");
		} else {
			usage("vmi-trigger: unknown option");
		}
		modes++;
	}
	if (modes > 1)
		usage("vmi-trigger: give at most one of --vmfunc, --rdtsc, --port");
	n = argc - i;
	if (n > max_args[mode])
		usage("vmi-trigger: too many arguments");
	if (mode != PORT)
		a[0] = 0;
	for (int k = 0; k < n; k++)
		if (number(argv[i + k], &a[k]))
			usage("vmi-trigger: arguments are unsigned integers (90, 0x5a)");

	switch (mode) {
	case VMFUNC:
		do_vmfunc(a);
		return 0;
	case RDTSC:
		do_rdtsc(a);
		return 0;
	default:
		return do_port(port, a[0]);
	}
}
