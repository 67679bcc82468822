/*
 * Bare-metal AArch64 guest payload for the administratively-disabled
 * vCPU tests (Arm virt machine, loaded with -kernel payload.elf, no
 * firmware: the boot CPU enters _start at EL1 with the MMU off, the
 * secondaries start powered off, the PSCI conduit is HVC).
 *
 * The boot CPU keeps powering on CPUs with Aff0 = 1..7 (PSCI CPU_ON);
 * every CPU that comes up counts itself in the mailbox and powers
 * itself off again (PSCI CPU_OFF), so a CPU's counter grows for as long
 * as the platform lets the guest power it on.
 *
 * Mailbox: 64 little-endian 64-bit slots at physical 0x40100000
 * (outside the ELF, read by the host with "xp /64gx 0x40100000").
 * The boot CPU zeroes slots 0..62 first on every boot.
 * Slot index i is at 0x40100000 + 8*i; n = 1..7 is the target Aff0.
 *
 *   slot 0       magic 0x314c504d564b5347 = bytes "GSKVMPL1" in memory
 *                order (written after the zeroing, i.e. "payload up")
 *   slot 1       PSCI_VERSION (0x84000000) result, e.g. 0x10001 = 1.1
 *   slot 2       boot-CPU sweep counter (+1 after each CPU_ON sweep)
 *   slots 3..7   unused (0)
 *   slot  8+n    last CPU_ON return for target n, sign-extended 64-bit
 *                (0 SUCCESS, -2 INVALID_PARAMETERS = 0xfffffffffffffffe,
 *                -3 DENIED, -4 ALREADY_ON, -5 ON_PENDING, ...)
 *   slot 16+n    bitmask of every CPU_ON return seen for target n since
 *                boot: bit (-ret) for ret in -62..0 (bit 0 SUCCESS, bit 2
 *                INVALID_PARAMETERS, bit 3 DENIED, bit 4 ALREADY_ON,
 *                bit 5 ON_PENDING, ...); bit 63 = any other value
 *   slot 24+n    times guest code ran on CPU n (written by CPU n)
 *   slot 32+n    MPIDR_EL1.Aff0 as seen by CPU n (written by CPU n)
 *   slots 8, 16, 24, 32 (n = 0) and 40..62   unused (0)
 *   slot 63      boots since power-on: not zeroed, incremented first
 *                (RAM is kept across a system reset; zero at power-on)
 *
 * Each slot has a single writer.  The MMU is off, so data accesses are
 * Device memory: only aligned plain loads/stores, no exclusives, no
 * stack.  Every mailbox store is followed by "dc civac" (so a host
 * reading through a cacheable mapping sees no stale line under KVM
 * without FWB) and "dsb sy".
 */

	.equ	MBOX,		0x40100000
	.equ	MBOX_SLOTS,	64
	.equ	BOOTS_SLOT,	MBOX_SLOTS - 1
	.equ	MAGIC,		0x314c504d564b5347	/* "GSKVMPL1" */
	.equ	UART_DR,	0x09000000		/* PL011 data register */
	.equ	UART_CR,	0x30			/* control reg offset */
	.equ	PSCI_VERSION,	0x84000000
	.equ	PSCI_CPU_OFF,	0x84000002
	.equ	PSCI_CPU_ON64,	0xc4000003
	.equ	MAX_TARGET,	7
	.equ	DELAY,		4000

/* Store x\reg into mailbox slot x\idx (x20 = MBOX); clobbers x9. */
	.macro	put reg, idx
	add	x9, x20, x\idx, lsl #3
	str	x\reg, [x9]
	dc	civac, x9
	dsb	sy
	.endm

	.text
	.global	_start
_start:
	ldr	x20, =MBOX

	/*
	 * Zero the mailbox but its last slot, which counts the boots: RAM
	 * outlives a system reset, so the host tells a restart from it.
	 */
	mov	x10, #0
1:	put	zr, 10
	add	x10, x10, #1
	cmp	x10, #BOOTS_SLOT
	b.lo	1b
	ldr	x1, [x20, x10, lsl #3]
	add	x1, x1, #1
	put	1, 10

	/* Slot 0: magic, slot 1: PSCI version. */
	ldr	x1, =MAGIC
	mov	x10, #0
	put	1, 10
	ldr	x0, =PSCI_VERSION
	hvc	#0
	mov	x10, #1
	put	0, 10

	/* One line on the PL011: enable it (UARTEN|TXE|RXE), send. */
	ldr	x1, =UART_DR
	mov	w2, #0x301
	str	w2, [x1, #UART_CR]
	adr	x2, banner
2:	ldrb	w3, [x2], #1
	cbz	w3, sweep
	str	w3, [x1]
	b	2b

sweep:	mov	x19, #1				/* x19 = target Aff0 */
3:	ldr	x0, =PSCI_CPU_ON64
	mov	x1, x19				/* MPIDR: Aff0 = target */
	adr	x2, secondary			/* entry (PA == VA) */
	mov	x3, x19				/* context id = target */
	hvc	#0
	sxtw	x0, w0				/* PSCI returns int32 */
	add	x10, x19, #8
	put	0, 10				/* slot 8+n = last ret */

	neg	x1, x0				/* bit = -ret, or 63 */
	mov	x2, #63
	cmp	x1, #62
	csel	x1, x1, x2, ls
	mov	x2, #1
	lsl	x2, x2, x1
	add	x10, x19, #16
	ldr	x3, [x20, x10, lsl #3]
	orr	x3, x3, x2
	put	3, 10				/* slot 16+n |= 1<<-ret */

	add	x19, x19, #1
	cmp	x19, #MAX_TARGET
	b.ls	3b

	mov	x1, #DELAY			/* short delay */
4:	subs	x1, x1, #1
	b.ne	4b

	mov	x10, #2				/* slot 2++ */
	ldr	x1, [x20, x10, lsl #3]
	add	x1, x1, #1
	put	1, 10
	b	sweep

/* Secondary entry: EL1, MMU off, x0 = context id = target index. */
secondary:
	ldr	x20, =MBOX
	and	x19, x0, #7
	add	x10, x19, #24			/* slot 24+n++ */
	ldr	x1, [x20, x10, lsl #3]
	add	x1, x1, #1
	put	1, 10
	mrs	x1, mpidr_el1			/* slot 32+n = Aff0 */
	and	x1, x1, #0xff
	add	x10, x19, #32
	put	1, 10
	ldr	x0, =PSCI_CPU_OFF
	hvc	#0
5:	wfi					/* CPU_OFF never returns */
	b	5b

banner:	.asciz	"payload: up\n"
	.balign	8
	.ltorg
