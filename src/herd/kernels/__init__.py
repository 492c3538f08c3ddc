"""herd's C++ CPU kernels and the one place each is chosen over its PyTorch equivalent.

- :mod:`herd.kernels.build`: compiling a kernel source on first use (cached per machine) and
  :class:`~herd.kernels.build.NativeLibrary`, each kernel's declaration of what it needs to run;
- :mod:`herd.kernels.attention`: causal attention for fp32 training and scoring, and
  :func:`~herd.kernels.attention.scaled_dot_product_attention`, the model's attention call;
- :mod:`herd.kernels.cross_entropy`: the output projection fused with cross-entropy, and
  :func:`~herd.kernels.cross_entropy.fused_linear_cross_entropy`, the fused loss's chunk loop;
- :mod:`herd.kernels.quantized_linear`: int8 and int4 weight-only products for decoding.

This package sits below :mod:`herd.model` and :mod:`herd.infer` and imports only torch and the
standard library. ``HERD_CPU_KERNELS=0`` turns every kernel off.
"""
