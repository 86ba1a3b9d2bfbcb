/* SPDX-License-Identifier: MIT */
/*
 * lazy.S — the common part of the forwarders' lazy stubs: a forwarder whose
 * pointer has not been set yet (a call before the library's constructor ran)
 * lands here with the pointer's address in a scratch register; we load the
 * real libpq, keeping every argument register, and jump to the function the
 * pointer now names.
 */
        .section .note.GNU-stack,"",%progbits
        .text
        .globl fp_realpq_lazy
        .hidden fp_realpq_lazy
        .type fp_realpq_lazy, %function
#if defined(__x86_64__)
fp_realpq_lazy:                         /* %r11: &fp_realpq_NAME */
        pushq %rbp
        movq %rsp, %rbp
        pushq %rdi
        pushq %rsi
        pushq %rdx
        pushq %rcx
        pushq %r8
        pushq %r9
        pushq %rax                      /* %al: vector registers used by a variadic call */
        pushq %r11
        subq $128, %rsp
        movdqu %xmm0, 0(%rsp)
        movdqu %xmm1, 16(%rsp)
        movdqu %xmm2, 32(%rsp)
        movdqu %xmm3, 48(%rsp)
        movdqu %xmm4, 64(%rsp)
        movdqu %xmm5, 80(%rsp)
        movdqu %xmm6, 96(%rsp)
        movdqu %xmm7, 112(%rsp)
        call fp_realpq_lazy_load
        movdqu 0(%rsp), %xmm0
        movdqu 16(%rsp), %xmm1
        movdqu 32(%rsp), %xmm2
        movdqu 48(%rsp), %xmm3
        movdqu 64(%rsp), %xmm4
        movdqu 80(%rsp), %xmm5
        movdqu 96(%rsp), %xmm6
        movdqu 112(%rsp), %xmm7
        addq $128, %rsp
        popq %r11
        popq %rax
        popq %r9
        popq %r8
        popq %rcx
        popq %rdx
        popq %rsi
        popq %rdi
        popq %rbp
        jmp *(%r11)
#elif defined(__aarch64__)
fp_realpq_lazy:                         /* x17: &fp_realpq_NAME */
        stp x29, x30, [sp, #-224]!
        mov x29, sp
        stp x0, x1, [sp, #16]
        stp x2, x3, [sp, #32]
        stp x4, x5, [sp, #48]
        stp x6, x7, [sp, #64]
        stp x8, x17, [sp, #80]
        stp q0, q1, [sp, #96]
        stp q2, q3, [sp, #128]
        stp q4, q5, [sp, #160]
        stp q6, q7, [sp, #192]
        bl fp_realpq_lazy_load
        ldp q6, q7, [sp, #192]
        ldp q4, q5, [sp, #160]
        ldp q2, q3, [sp, #128]
        ldp q0, q1, [sp, #96]
        ldp x8, x17, [sp, #80]
        ldp x6, x7, [sp, #64]
        ldp x4, x5, [sp, #48]
        ldp x2, x3, [sp, #32]
        ldp x0, x1, [sp, #16]
        ldp x29, x30, [sp], #224
        ldr x16, [x17]
        br x16
#else
#error "the libpq drop-in has forwarders for x86_64 and aarch64 only"
#endif
        .size fp_realpq_lazy, .-fp_realpq_lazy
