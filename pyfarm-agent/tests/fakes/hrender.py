"""Stands for Houdini's $HFS/bin/hrender.py: the fake hython checks that
it runs a file of this name next to itself (see README.rst)."""
