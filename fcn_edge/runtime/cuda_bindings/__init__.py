"""The two CUDA bindings behind :class:`fcn_edge.runtime.cuda.CudaBinding`: cuda-python and PyCUDA."""
