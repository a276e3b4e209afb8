"""The play engine: how a frame is computed (README.md in this folder). `make_plan` decides once per
world; `Runtime` carries the plan out; `kernels` binds the C library that `build` compiles."""
from .plan import Plan, make_plan

__all__ = ["Plan", "make_plan"]
