"""Array maths shared by layers (im2col/col2im, output sizes)."""
