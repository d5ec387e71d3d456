// SPDX-License-Identifier: Apache-2.0
/*
 * trigger-loop: a resident guest process that triggers introspection periodically.
 *
 *   trigger-loop PERIOD_US COUNT     (COUNT 0: forever)
 *
 * Writes 'T' to the debug port 0x402 (one outb, as vmi-trigger --port 0x402 does), then
 * sleeps PERIOD_US microseconds, COUNT times.  The overhead benchmark
 * (tools/bench/overhead.py) uses it to measure what the triggered design costs a guest
 * that triggers from a process that stays running, without a fork and exec per trigger
 * (which under QEMU TCG costs the guest far more than the trigger itself).
 *
 * No libc: a few hundred bytes, so that it crosses the serial console in one command.
 * Exits 2 on bad arguments, 3 if it may not use the port.
 */

#define SYS_NANOSLEEP 35
#define SYS_EXIT 60
#define SYS_IOPL 172
#define PORT 0x402
#define BYTE 'T'

struct timespec_ { long sec, nsec; };

static long syscall3(long n, long a, long b, long c)
{
	long ret;

	__asm__ volatile ("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c)
			  : "rcx", "r11", "memory");
	return ret;
}

static void leave(long code)
{
	for (;;)
		syscall3(SYS_EXIT, code, 0, 0);
}

/* A decimal number of at most 12 digits; -1 if it is not one. */
static long number(const char *s)
{
	long value = 0;
	int digits = 0;

	for (; *s; s++, digits++) {
		if (*s < '0' || *s > '9' || digits >= 12)
			return -1;
		value = value * 10 + (*s - '0');
	}
	return digits ? value : -1;
}

void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	long period, count, i;
	struct timespec_ pause;

	if (argc != 3)
		leave(2);
	period = number(argv[1]);
	count = number(argv[2]);
	if (period < 0 || count < 0)
		leave(2);
	if (syscall3(SYS_IOPL, 3, 0, 0) != 0)
		leave(3);
	pause.sec = period / 1000000;
	pause.nsec = (period % 1000000) * 1000;
	for (i = 0; count == 0 || i < count; i++) {
		__asm__ volatile ("outb %b0, %w1" : : "a"(BYTE), "Nd"(PORT));
		if (period)
			syscall3(SYS_NANOSLEEP, (long)&pause, 0, 0);
	}
	leave(0);
}

__asm__(".globl _start\n"
	"_start:\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call start_c\n"
	"	hlt\n");
