"""BiomedCLIP image preprocessing: ``core`` (NumPy/CuPy, no Holoscan) and ``operator`` (PreprocessOp)."""

from burnscope.operators.preprocess.core import PreprocessResult, Preprocessor

__all__ = ["Preprocessor", "PreprocessResult"]
