# -*- Python -*-
# lit configuration of the attnc test suite; paths come from lit.site.cfg.py.

import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "attnc"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".attn"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "Inputs"]

config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.attnc_obj_root, "tests", "lit")

llvm_config.use_default_substitutions()

# The DSL standard library (*.attn definitions).
config.substitutions.append(("%lib", os.path.join(config.attnc_src_root, "lib")))

# The fake CUDA driver of tests/runtime (FakeCuda.h), for $ATTNC_LIBCUDA:
# `attnc run --target=cuda` as far as the launch without a GPU.
config.substitutions.append(
    ("%fake_cuda", os.path.join(config.attnc_obj_root, "lib", "libattnc-fake-cuda.so")))

# FileCheck, not, count, split-file come from the LLVM install; our tools from
# the build tree. Tools that are not built yet are left unsubstituted.
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
tools = [
    ToolSubst("attnc-opt", unresolved="ignore"),
    ToolSubst("attnc", unresolved="ignore"),
]
llvm_config.add_tool_substitutions(tools, [config.attnc_tools_dir])

# `attnc run --target=cpu` goes through the kernel cache: keep it in the
# build tree, never in the user's ~/.cache/attnc.
config.environment["ATTNC_CACHE_DIR"] = os.path.join(config.test_exec_root, "attnc-cache")
