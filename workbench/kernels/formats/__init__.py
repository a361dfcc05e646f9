"""Weight formats, one module each: layout, numpy reference codec, get-rows and matvec
kernels with their plain reference, and a `FORMAT` row (`base.WeightFormat`). The table
of all of them is `workbench.kernels.table`."""
