"""Vector building blocks the weight kernels are written in (LLVM vector IR through numba
intrinsics): `vectors` portable 16-lane accumulators and block dots, `x86` the CPU's
instruction choices, `pairs` / `quads` / `octets` several weight rows per register.
Under NUMBA_DISABLE_JIT=1 every name comes from `numpy_twins` instead."""
