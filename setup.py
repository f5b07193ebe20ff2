"""Only the compiled part lives here; all metadata is declarative in setup.cfg.

setuptools cannot declare a C extension in setup.cfg, and declaring it in
pyproject.toml would move every field there, so this file names it and nothing else.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # Compiled twins of the delta encoder and the tree reader: gitfs_p2p/pack/ keeps the
        # pure-Python references, and the tests prove both give the same results.
        Extension(
            "gitfs_p2p.pack._speedups",
            sources=["gitfs_p2p/pack/_speedups.c"],
            extra_compile_args=["-O2", "-std=c99"],
            libraries=["z"],  # zlib: the pack entry reader inflates
        )
    ]
)
